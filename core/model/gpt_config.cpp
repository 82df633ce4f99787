#include "core/model/gpt_config.h"

#include "core/error.h"

namespace gpt {

ModelFamily parse_family(const std::string& name) {
  if (name == "gpt2") return ModelFamily::GPT2;
  if (name == "llama") return ModelFamily::Llama;
  fail("config key 'model.family' must be gpt2 or llama, got '" + name + "'");
}

const char* family_name(ModelFamily family) { return family == ModelFamily::Llama ? "llama" : "gpt2"; }

int64_t GPTConfig::ffn() const {
  if (ffn_hidden > 0) return ffn_hidden;
  // LLaMA's rule (Meta's model.py): two thirds of GPT's 4C, rounded up to a multiple of 256.
  const int64_t f = 2 * (4 * int64_t(n_embd)) / 3;
  return (f + 255) / 256 * 256;
}

MoeConfig GPTConfig::moe_layer() const {
  MoeConfig m = moe;
  if (m.expert_hidden == 0) m.expert_hidden = 4 * int64_t(n_embd);
  return m;
}

// The MoE keys (validated only when moe.experts > 0: the dense model ignores them).
static void validate_moe(const GPTConfig& c) {
  auto s = [](int64_t v) { return std::to_string(v); };
  GPT_CHECK(c.moe.experts >= 0, "config key 'moe.experts' must not be negative (0 is the dense model), got " +
                                    s(c.moe.experts));
  if (!c.is_moe()) return;
  GPT_CHECK(c.family == ModelFamily::GPT2,
            "config key 'moe.experts' > 0 needs model.family = gpt2 for now (the LLaMA block has no MoE MLP yet)");
  GPT_CHECK(c.moe_every >= 1 && c.moe_every <= c.n_layer,
            "config key 'moe.every' must be in [1, model.n_layer = " + s(c.n_layer) + "] (block l is MoE when (l + 1) % every == 0), got " +
                s(c.moe_every));
  GPT_CHECK(c.moe.expert_hidden >= 0, "config key 'moe.expert_hidden' must not be negative (0: 4 n_embd), got " +
                                          s(c.moe.expert_hidden));
  c.moe_layer().validate();  // names the moe.* key of a bad value
}

void GPTConfig::validate() const {
  auto positive = [](int v, const char* key) {
    GPT_CHECK(v > 0, std::string("config key '") + key + "' must be positive, got " +
                         std::to_string(v));
  };
  auto s = [](int v) { return std::to_string(v); };
  positive(n_layer, "model.n_layer");
  positive(n_head, "model.n_head");
  positive(n_embd, "model.n_embd");
  positive(vocab_size, "model.vocab_size");
  positive(block_size, "model.block_size");
  GPT_CHECK(n_embd % n_head == 0, "config key 'model.n_embd' (" + std::to_string(n_embd) +
                                      ") is not divisible by 'model.n_head' (" +
                                      std::to_string(n_head) + ")");
  GPT_CHECK(n_kv_head >= 0, "config key 'model.n_kv_head' must be positive (or 0: n_head), got " + s(n_kv_head));
  GPT_CHECK(ffn_hidden >= 0, "config key 'model.ffn_hidden' must be positive (or 0: 8 n_embd / 3), got " + s(ffn_hidden));
  if (family == ModelFamily::GPT2) {
    // GPT-2 has none of these: a value other than GPT-2's would be silently ignored.
    GPT_CHECK(kv_heads() == n_head, "config key 'model.n_kv_head' (" + s(n_kv_head) +
                                        ") needs model.family = llama: GPT-2 attention has n_head key/value heads");
    GPT_CHECK(ffn_hidden == 0, "config key 'model.ffn_hidden' needs model.family = llama: GPT-2's MLP is 4 n_embd wide");
    GPT_CHECK(tie_embeddings, "config key 'model.tie_embeddings' = false needs model.family = llama: GPT-2 ties its head");
    validate_moe(*this);
    return;
  }
  validate_moe(*this);
  GPT_CHECK(n_head % kv_heads() == 0, "config key 'model.n_head' (" + s(n_head) +
                                          ") is not divisible by 'model.n_kv_head' (" + s(kv_heads()) + ")");
  GPT_CHECK(head_size() % 2 == 0, "config key 'model.n_head': head size n_embd / n_head = " + s(n_embd) + " / " +
                                      s(n_head) + " = " + s(head_size()) + " is odd, and RoPE rotates pairs of channels");
  GPT_CHECK(rope_theta > 0.f, "config key 'model.rope_theta' must be positive");
  GPT_CHECK(norm_eps > 0.f, "config key 'model.norm_eps' must be positive");
}

int64_t GPTConfig::num_params() const {
  const int64_t C = n_embd, L = n_layer, V = vocab_size;
  if (family == ModelFamily::Llama) {
    const int64_t HS = head_size(), qkv = C * (n_head + 2 * kv_heads()) * HS, o = n_head * HS * C;
    const int64_t per_block = 2 * C + qkv + o + 3 * C * ffn();  // two RMSNorms, attention, SwiGLU
    return V * C * (tie_embeddings ? 1 : 2) + L * per_block + C;
  }
  int64_t per_block = 2 * 2 * C            // two LayerNorms
                      + C * 3 * C + 3 * C  // qkv
                      + C * C + C          // attention projection
                      + C * 4 * C + 4 * C  // mlp fc
                      + 4 * C * C + C;     // mlp projection
  const int64_t dense = V * C + int64_t(block_size) * C + L * per_block + 2 * C;
  if (!is_moe()) return dense;
  // An MoE block trades the dense MLP for the router, E experts and the shared experts.
  const MoeConfig m = moe_layer();
  const int64_t H = m.expert_hidden, SH = m.shared_experts * H;
  const int64_t expert = H * C + H + C * H + C;
  const int64_t shared = SH > 0 ? SH * C + SH + C * SH + C : 0;
  const int64_t moe_mlp = m.experts * C + m.experts * expert + shared;
  const int64_t dense_mlp = C * 4 * C + 4 * C + 4 * C * C + C;
  return dense + int64_t(moe_blocks()) * (moe_mlp - dense_mlp);
}

int64_t GPTConfig::active_params() const {
  if (!is_moe()) return num_params();
  const MoeConfig m = moe_layer();
  const int64_t C = n_embd, H = m.expert_hidden;
  const int64_t expert = H * C + H + C * H + C;
  return num_params() - int64_t(moe_blocks()) * (m.experts - m.top_k) * expert;
}

double GPTConfig::flops_per_token(int T) const {
  return 6.0 * double(active_params()) + 12.0 * n_layer * double(n_embd) * T;
}

// Published LLaMA shapes (Hugging Face config.json of each): block_size is the training
// context; vocabularies are the models' own tokenizers'.
static GPTConfig llama_shape(int L, int NH, int NKV, int C, int F, int V, int T, float theta, bool tied) {
  GPTConfig c;
  c.family = ModelFamily::Llama;
  c.n_layer = L, c.n_head = NH, c.n_kv_head = NKV, c.n_embd = C, c.ffn_hidden = F;
  c.vocab_size = V, c.block_size = T, c.rope_theta = theta, c.tie_embeddings = tied;
  return c;
}

GPTConfig gpt_preset(const std::string& name) {
  GPTConfig c;
  c.vocab_size = 50257;
  c.block_size = 1024;
  if (name == "tiny") {
    c.n_layer = 4, c.n_head = 4, c.n_embd = 128, c.block_size = 256;
  } else if (name == "gpt2-124M") {
    c.n_layer = 12, c.n_head = 12, c.n_embd = 768;
  } else if (name == "gpt2-350M") {
    c.n_layer = 24, c.n_head = 16, c.n_embd = 1024;
  } else if (name == "gpt2-774M") {
    c.n_layer = 36, c.n_head = 20, c.n_embd = 1280;
  } else if (name == "gpt2-1.5B") {
    c.n_layer = 48, c.n_head = 25, c.n_embd = 1600;
  } else if (name == "llama-tiny") {
    // GPT-2's tokenizer (the default corpus's) on a "tiny"-sized LLaMA with GQA.
    c = llama_shape(4, 4, 2, 128, 384, 50257, 256, 10000.f, false);
  } else if (name == "llama-1B") {
    c = llama_shape(16, 32, 8, 2048, 8192, 128256, 8192, 500000.f, true);  // Llama-3.2-1B
  } else if (name == "llama2-7B") {
    c = llama_shape(32, 32, 32, 4096, 11008, 32000, 4096, 10000.f, false);
  } else if (name == "llama3-8B") {
    c = llama_shape(32, 32, 8, 4096, 14336, 128256, 8192, 500000.f, false);
  } else {
    std::string known;
    for (auto& n : gpt_preset_names()) known += " " + n;
    fail("config key 'model.preset': unknown preset '" + name + "' (known:" + known + ")");
  }
  return c;
}

std::vector<std::string> gpt_preset_names() {
  return {"tiny", "gpt2-124M", "gpt2-350M", "gpt2-774M", "gpt2-1.5B", "llama-tiny", "llama-1B", "llama2-7B", "llama3-8B"};
}

}  // namespace gpt
