#include "core/checkpoint/hf_gpt2.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/checkpoint/json_lite.h"
#include "core/checkpoint/safetensors.h"
#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {

// What our CPU/CUDA kernels compute (core/cpu/layernorm.cpp, core/cpu/gelu.cpp): GPT-2's
// LayerNorm epsilon and the tanh GELU, which Hugging Face calls "gelu_new".
constexpr double kLayerNormEps = 1e-5;
constexpr const char* kActivation = "gelu_new";
// GPT-2's <|endoftext|>, which our tokenizer (data/) also uses.
constexpr int kEndOfText = 50256;
constexpr const char* kHfPrefix = "transformer.";

// One parameter in both namings. `transpose`: a matmul weight, [out, in] ours and
// [in, out] in Hugging Face's Conv1D.
struct Mapping {
  std::string ours, hf;  // hf without the "transformer." prefix
  Shape shape;           // ours
  bool transpose = false;
  Shape hf_shape() const { return transpose ? Shape{shape[1], shape[0]} : shape; }
};

std::vector<Mapping> gpt2_layout(const GPTConfig& cfg) {
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, P = cfg.block_size;
  std::vector<Mapping> m = {{"wte", "wte.weight", {V, C}}, {"wpe", "wpe.weight", {P, C}}};
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string o = "blocks." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
    auto layernorm = [&](const std::string& ours, const std::string& hf) {
      m.push_back({o + ours + ".weight", h + hf + ".weight", {C}});
      m.push_back({o + ours + ".bias", h + hf + ".bias", {C}});
    };
    auto linear = [&](const std::string& ours, const std::string& hf, int64_t out, int64_t in) {
      m.push_back({o + ours + ".weight", h + hf + ".weight", {out, in}, true});
      m.push_back({o + ours + ".bias", h + hf + ".bias", {out}});
    };
    layernorm("ln1", "ln_1");
    linear("attn.qkv", "attn.c_attn", 3 * C, C);
    linear("attn.proj", "attn.c_proj", C, C);
    layernorm("ln2", "ln_2");
    linear("mlp.fc", "mlp.c_fc", 4 * C, C);
    linear("mlp.proj", "mlp.c_proj", C, 4 * C);
  }
  m.push_back({"lnf.weight", "ln_f.weight", {C}});
  m.push_back({"lnf.bias", "ln_f.bias", {C}});
  return m;
}

HostTensor transposed(const HostTensor& t) {
  const int64_t R = t.shape[0], K = t.shape[1];
  HostTensor out{{K, R}, std::vector<float>(t.data.size())};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) out.data[size_t(k * R + r)] = t.data[size_t(r * K + k)];
  return out;
}

// Keys sorted, as transformers writes them; dropout 0 because our model has none, so a
// model fine-tuned from this file starts from the same computation we trained.
std::string config_json(const GPTConfig& cfg) {
  const std::string C = std::to_string(cfg.n_embd), P = std::to_string(cfg.block_size);
  const std::string eot = std::to_string(kEndOfText);
  return std::string("{\n") +
         "  \"activation_function\": \"" + kActivation + "\",\n" +
         "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
         "  \"attn_pdrop\": 0.0,\n"
         "  \"bos_token_id\": " + eot + ",\n"
         "  \"embd_pdrop\": 0.0,\n"
         "  \"eos_token_id\": " + eot + ",\n"
         "  \"initializer_range\": 0.02,\n"
         "  \"layer_norm_epsilon\": 1e-05,\n"
         "  \"model_type\": \"gpt2\",\n"
         "  \"n_ctx\": " + P + ",\n"
         "  \"n_embd\": " + C + ",\n"
         "  \"n_head\": " + std::to_string(cfg.n_head) + ",\n"
         "  \"n_inner\": null,\n"
         "  \"n_layer\": " + std::to_string(cfg.n_layer) + ",\n"
         "  \"n_positions\": " + P + ",\n"
         "  \"reorder_and_upcast_attn\": false,\n"
         "  \"resid_pdrop\": 0.0,\n"
         "  \"scale_attn_by_inverse_layer_idx\": false,\n"
         "  \"scale_attn_weights\": true,\n"
         "  \"tie_word_embeddings\": true,\n"
         "  \"torch_dtype\": \"float32\",\n"
         "  \"use_cache\": true,\n"
         "  \"vocab_size\": " + std::to_string(cfg.vocab_size) + "\n"
         "}\n";
}

// Renames over `path` only once the whole file is written, so a crash leaves the old
// file or none, never half of one.
void commit_tmp(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  GPT_CHECK(!ec, path + ": cannot rename from " + tmp + ": " + ec.message());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GPT_CHECK(in, path + ": cannot open (no such file?)");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// config.json keys, each failure naming the file and the key.
struct ConfigReader {
  const json::Value& root;
  const std::string& path;

  [[noreturn]] void bad(const std::string& key, const std::string& why) const {
    fail(path + ": key \"" + key + "\" " + why);
  }
  int positive_int(const std::string& key) const {
    const json::Value* v = root.find(key);
    if (!v) bad(key, "is missing");
    int64_t n = 0;
    if (!v->as_int64(n) || n <= 0 || n > (int64_t(1) << 30)) bad(key, "must be a positive integer");
    return int(n);
  }
  // The value of a boolean key, `dflt` when absent (transformers' default).
  bool flag(const std::string& key, bool dflt) const {
    const json::Value* v = root.find(key);
    if (!v) return dflt;
    if (!v->is_bool()) bad(key, "must be true or false");
    return v->boolean;
  }
  std::string string(const std::string& key, const std::string& dflt) const {
    const json::Value* v = root.find(key);
    if (!v) return dflt;
    if (!v->is_string()) bad(key, "must be a string");
    return v->text;
  }
};

GPTConfig read_config(const std::string& path) {
  const json::Value root = json::parse(read_text(path), path);
  GPT_CHECK(root.is_object(), path + ": not a JSON object");
  const ConfigReader r{root, path};
  const std::string type = r.string("model_type", "");
  if (type != "gpt2") r.bad("model_type", "is \"" + type + "\"; only \"gpt2\" can be imported");
  const std::string act = r.string("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    r.bad("activation_function", "is \"" + act +
                                     "\"; our GELU is the tanh approximation (gelu_new or gelu_pytorch_tanh)");
  if (const json::Value* eps = root.find("layer_norm_epsilon")) {
    if (!eps->is_number() || std::fabs(eps->number - kLayerNormEps) > 1e-6 * kLayerNormEps)
      r.bad("layer_norm_epsilon", "must be 1e-05, the epsilon our LayerNorm uses");
  }
  if (!r.flag("tie_word_embeddings", true))
    r.bad("tie_word_embeddings", "is false: untied LM heads are not supported");
  if (!r.flag("scale_attn_weights", true))
    r.bad("scale_attn_weights", "is false: our attention always scales by 1/sqrt(head size)");
  if (r.flag("scale_attn_by_inverse_layer_idx", false))
    r.bad("scale_attn_by_inverse_layer_idx", "is true: not supported");
  if (r.flag("add_cross_attention", false)) r.bad("add_cross_attention", "is true: not supported");

  GPTConfig cfg;
  cfg.n_layer = r.positive_int("n_layer");
  cfg.n_head = r.positive_int("n_head");
  cfg.n_embd = r.positive_int("n_embd");
  cfg.vocab_size = r.positive_int("vocab_size");
  cfg.block_size = r.positive_int("n_positions");
  if (cfg.n_embd % cfg.n_head != 0) r.bad("n_embd", "is not divisible by \"n_head\"");
  if (const json::Value* inner = root.find("n_inner"); inner && !inner->is_null()) {
    int64_t n = 0;
    if (!inner->as_int64(n) || n != 4 * int64_t(cfg.n_embd))
      r.bad("n_inner", "must be null or 4 * n_embd: our MLP is 4x wide");
  }
  cfg.validate();
  return cfg;
}

}  // namespace

std::map<std::string, Shape> gpt2_param_shapes(const GPTConfig& cfg) {
  std::map<std::string, Shape> shapes;
  for (const Mapping& m : gpt2_layout(cfg)) shapes.emplace(m.ours, m.shape);
  return shapes;
}

void export_hf_gpt2(const TensorMap& params, const GPTConfig& cfg, const std::string& dir) {
  cfg.validate();
  const std::vector<Mapping> layout = gpt2_layout(cfg);
  // Anything else (optimizer moments, a sharded slice's leftovers) would vanish silently.
  const std::map<std::string, Shape> expected = gpt2_param_shapes(cfg);
  for (const auto& kv : params)
    GPT_CHECK(expected.count(kv.first), "export_hf_gpt2: '" + kv.first + "' is not a GPT-2 parameter");
  TensorMap hf;
  for (const Mapping& m : layout) {
    auto it = params.find(m.ours);
    GPT_CHECK(it != params.end(), "export_hf_gpt2: parameter '" + m.ours + "' is missing");
    GPT_CHECK(it->second.shape == m.shape, "export_hf_gpt2: parameter '" + m.ours + "' has shape " +
                                               shape_str(it->second.shape) + ", the config implies " +
                                               shape_str(m.shape));
    hf.emplace(kHfPrefix + m.hf, m.transpose ? transposed(it->second) : it->second);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  GPT_CHECK(!ec, dir + ": cannot create directory: " + ec.message());
  const std::string weights = dir + "/model.safetensors", config = dir + "/config.json";
  try {
    safetensors_write(weights + ".tmp", hf);
  } catch (const Error&) {
    fs::remove(weights + ".tmp", ec);  // no half-written file left behind (disk full)
    throw;
  }
  commit_tmp(weights + ".tmp", weights);
  {
    std::ofstream out(config + ".tmp", std::ios::binary | std::ios::trunc);
    GPT_CHECK(out, config + ".tmp: cannot open for writing");
    out << config_json(cfg);
    out.flush();
    GPT_CHECK(out, config + ".tmp: write failed (disk full?)");
  }
  commit_tmp(config + ".tmp", config);
}

std::pair<GPTConfig, TensorMap> import_hf_gpt2(const std::string& dir) {
  const std::string config_path = dir + "/config.json", weights = dir + "/model.safetensors";
  const GPTConfig cfg = read_config(config_path);
  TensorMap file = safetensors_read(weights);

  const std::vector<Mapping> layout = gpt2_layout(cfg);
  std::map<std::string, const Mapping*> by_hf;
  for (const Mapping& m : layout) by_hf.emplace(m.hf, &m);
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };

  TensorMap ours;
  const HostTensor* lm_head = nullptr;
  for (auto& [name, t] : file) {
    const std::string at = weights + ": tensor '" + name + "'";
    const bool prefixed = name.compare(0, std::string(kHfPrefix).size(), kHfPrefix) == 0;
    const std::string key = prefixed ? name.substr(std::string(kHfPrefix).size()) : name;
    if (key.compare(0, 2, "h.") == 0 && (ends_with(key, ".attn.bias") || ends_with(key, ".attn.masked_bias")))
      continue;  // the causal-mask buffers older transformers saved; not parameters
    if (name == "lm_head.weight") {
      lm_head = &t;
      continue;
    }
    auto it = by_hf.find(key);
    GPT_CHECK(it != by_hf.end(), at + " is not a parameter of GPT2LMHeadModel with " +
                                     std::to_string(cfg.n_layer) + " layers (config.json)");
    const Mapping& m = *it->second;
    GPT_CHECK(!ours.count(m.ours), at + " appears both with and without the 'transformer.' prefix");
    GPT_CHECK(t.shape == m.hf_shape(), at + " has shape " + shape_str(t.shape) + ", " + config_path +
                                           " implies " + shape_str(m.hf_shape()));
    if (m.transpose) {
      ours.emplace(m.ours, transposed(t));
      std::vector<float>().swap(t.data);  // bounded memory: each tensor is held twice at most
    } else {
      ours.emplace(m.ours, std::move(t));
    }
  }
  for (const Mapping& m : layout)
    GPT_CHECK(ours.count(m.ours), weights + ": tensor '" + m.hf + "' (or 'transformer." + m.hf +
                                      "') is missing");
  if (lm_head) {
    const HostTensor& wte = ours.at("wte");
    GPT_CHECK(lm_head->shape == wte.shape && lm_head->data == wte.data,
              weights + ": tensor 'lm_head.weight' differs from wte.weight: untied LM heads are not supported");
  }
  return {cfg, std::move(ours)};
}

}  // namespace gpt
