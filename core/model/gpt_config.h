// Shape of a decoder-only model of either family, with the published presets:
//   gpt2   GPT-2: learned positions, LayerNorm, GELU MLP, biases, head tied to wte;
//   llama  LLaMA: RoPE, RMSNorm, SwiGLU, no biases, grouped-query attention
//          (n_kv_head), head untied by default.
// (The struct kept GPT-2's name when the LLaMA family joined: it is the model shape
// every layer of the framework passes around.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/layers/moe_router.h"

namespace gpt {

enum class ModelFamily { GPT2, Llama };
// "gpt2" | "llama"; throws naming config key 'model.family' otherwise.
ModelFamily parse_family(const std::string& name);
const char* family_name(ModelFamily family);

struct GPTConfig {
  int n_layer = 2;
  int n_head = 4;
  int n_embd = 64;
  int vocab_size = 512;
  int block_size = 64;  // maximum sequence length (GPT-2: position table rows)
  // After the shape: GPTConfig{L, NH, C, V, T} still reads as GPT-2's five numbers.
  ModelFamily family = ModelFamily::GPT2;

  // The LLaMA family's keys (GPT-2 accepts only their GPT-2 values).
  int n_kv_head = 0;           // key/value heads of grouped-query attention; 0: n_head
  int ffn_hidden = 0;          // SwiGLU width F; 0: LLaMA's 8C/3 rounded up to 256
  float rope_theta = 10000.f;  // RoPE base: 10,000 (LLaMA 1/2), 500,000 (LLaMA 3)
  float norm_eps = 1e-5f;      // RMSNorm epsilon
  bool tie_embeddings = true;  // LM head tied to wte (GPT-2 always; LLaMA presets: false)

  // Mixture of experts (moe.* keys; GPT-2 only for now). moe.experts = 0 is the dense
  // model. Block l's MLP is an MoE layer when (l + 1) % moe_every == 0: every = 1 makes
  // every block MoE, every = 2 blocks 1, 3, 5, ... (the second of each pair, as GShard
  // and Switch interleave them). moe.expert_hidden 0 means 4 n_embd, GPT-2's MLP width.
  MoeConfig moe{};
  int moe_every = 1;

  int kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int head_size() const { return n_embd / n_head; }
  int64_t ffn() const;  // F
  bool is_moe() const { return moe.experts > 0; }
  bool moe_block(int layer) const { return is_moe() && (layer + 1) % moe_every == 0; }
  int moe_blocks() const { return is_moe() ? n_layer / moe_every : 0; }
  // The layer's configuration with expert_hidden resolved (0: 4 n_embd).
  MoeConfig moe_layer() const;

  // Throws gpt::Error naming the offending config key.
  void validate() const;
  // Parameters: embeddings + blocks + final norm (+ an untied head); every expert counted.
  int64_t num_params() const;
  // The parameters one token runs through: num_params() less, in each MoE block, the
  // experts it is not routed to (the router, k experts and the shared experts count).
  int64_t active_params() const;
  // Training FLOPs per token: 6N + 12 L d T (PaLM's accounting, attention included), N
  // the active parameters.
  double flops_per_token(int T) const;
};

// GPT-2: "tiny", "gpt2-124M", "gpt2-350M", "gpt2-774M", "gpt2-1.5B"; LLaMA:
// "llama-tiny", "llama-1B", "llama2-7B", "llama3-8B"; throws for other names.
GPTConfig gpt_preset(const std::string& name);
std::vector<std::string> gpt_preset_names();

}  // namespace gpt
