// Hugging Face GPT-2 conversion without torch: round trips, the published file's naming
// (no "transformer." prefix, attention buffers, a tied lm_head), and one error line per
// file we cannot represent. tests/core/hf_gpt2_torch_test.cpp checks the numerics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/checkpoint/hf_gpt2.h"
#include "core/checkpoint/safetensors.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

namespace fs = std::filesystem;

GPTConfig small_config() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 6, c.vocab_size = 11, c.block_size = 5;
  return c;
}

TensorMap random_params(const GPTConfig& cfg, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  TensorMap m;
  for (const auto& [name, shape] : gpt2_param_shapes(cfg)) {
    HostTensor& t = m[name];
    t.shape = shape;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    for (int64_t i = 0; i < n; ++i) t.data.push_back(normal(gen));
  }
  return m;
}

std::string text_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void replace(std::string& s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
}

class HfGpt2 : public ::testing::Test {
 protected:
  fs::path dir_;
  GPTConfig cfg_ = small_config();
  TensorMap params_ = random_params(cfg_, 7);
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hf_gpt2_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string sub(const std::string& name) const { return (dir_ / name).string(); }
};

TEST_F(HfGpt2, ExportImportRoundTripIsExact) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  EXPECT_FALSE(fs::exists(sub("a/model.safetensors.tmp")));
  const auto [cfg, params] = import_hf_gpt2(sub("a"));
  EXPECT_EQ(cfg.n_layer, 2);
  EXPECT_EQ(cfg.n_head, 2);
  EXPECT_EQ(cfg.n_embd, 6);
  EXPECT_EQ(cfg.vocab_size, 11);
  EXPECT_EQ(cfg.block_size, 5);
  ASSERT_EQ(params.size(), params_.size());
  for (const auto& [name, t] : params_) {
    EXPECT_EQ(params.at(name).shape, t.shape) << name;
    EXPECT_EQ(params.at(name).data, t.data) << name;
  }
  export_hf_gpt2(params, cfg, sub("b"));
  EXPECT_EQ(text_of(sub("a/model.safetensors")), text_of(sub("b/model.safetensors")));
  EXPECT_EQ(text_of(sub("a/config.json")), text_of(sub("b/config.json")));
}

TEST_F(HfGpt2, WritesHuggingFaceNamesAndConv1DLayout) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  const TensorMap hf = safetensors_read(sub("a/model.safetensors"));
  EXPECT_EQ(hf.size(), params_.size());
  EXPECT_FALSE(hf.count("lm_head.weight"));
  const HostTensor& qkv = params_.at("blocks.1.attn.qkv.weight");  // [3C, C]
  const HostTensor& c_attn = hf.at("transformer.h.1.attn.c_attn.weight");
  ASSERT_EQ(c_attn.shape, (Shape{6, 18}));
  for (int64_t o = 0; o < 18; ++o)
    for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(c_attn.data[size_t(i * 18 + o)], qkv.data[size_t(o * 6 + i)]);
  EXPECT_EQ(hf.at("transformer.h.0.mlp.c_proj.weight").shape, (Shape{24, 6}));
  EXPECT_EQ(hf.at("transformer.ln_f.bias").data, params_.at("lnf.bias").data);
  const std::string config = text_of(sub("a/config.json"));
  EXPECT_NE(config.find("\"activation_function\": \"gelu_new\""), std::string::npos);
  EXPECT_NE(config.find("\"layer_norm_epsilon\": 1e-05"), std::string::npos);
  EXPECT_NE(config.find("\"n_positions\": 5"), std::string::npos);
}

// The published openai-community/gpt2 naming: no prefix, attention mask buffers, and
// (in some conversions) lm_head.weight stored next to wte.
TEST_F(HfGpt2, ImportsThePublishedNaming) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  TensorMap hf = safetensors_read(sub("a/model.safetensors")), bare;
  for (auto& [name, t] : hf) bare[name.substr(std::string("transformer.").size())] = t;
  bare["h.0.attn.bias"] = {{1, 1, 5, 5}, std::vector<float>(25, 1.f)};
  bare["h.1.attn.masked_bias"] = {{}, {-1e4f}};
  bare["lm_head.weight"] = bare.at("wte.weight");
  safetensors_write(sub("a/model.safetensors"), bare);
  const auto [cfg, params] = import_hf_gpt2(sub("a"));
  EXPECT_EQ(params.at("blocks.0.mlp.fc.weight").data, params_.at("blocks.0.mlp.fc.weight").data);
  EXPECT_EQ(params.size(), params_.size());

  bare["lm_head.weight"].data[3] += 1.f;
  safetensors_write(sub("a/model.safetensors"), bare);
  const std::string e = error_of([&] { import_hf_gpt2(sub("a")); });
  EXPECT_NE(e.find("tensor 'lm_head.weight' differs from wte.weight: untied"), std::string::npos) << e;
}

// A config.json in the style of the published one: keys we leave at transformers'
// defaults are absent, and keys that do not change the computation are ignored.
TEST_F(HfGpt2, ReadsAMinimalPublishedStyleConfig) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  std::ofstream(sub("a/config.json"), std::ios::binary | std::ios::trunc)
      << "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_ctx\": 5,\n"
         " \"n_embd\": 6, \"n_head\": 2, \"n_layer\": 2, \"n_positions\": 5, \"vocab_size\": 11,\n"
         " \"summary_type\": \"cls_index\", \"task_specific_params\": {\"text-generation\":\n"
         " {\"do_sample\": true, \"max_length\": 50}}, \"resid_pdrop\": 0.1}\n";
  const auto [cfg, params] = import_hf_gpt2(sub("a"));
  EXPECT_EQ(cfg.n_embd, 6);
  EXPECT_EQ(params.at("wte").data, params_.at("wte").data);
}

TEST_F(HfGpt2, RejectsTensorsWeCannotPlace) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  const std::string file = sub("a/model.safetensors");
  const TensorMap good = safetensors_read(file);
  auto import_error = [&](const TensorMap& m) {
    safetensors_write(file, m);
    return error_of([&] { import_hf_gpt2(sub("a")); });
  };
  TensorMap m = good;
  m.erase("transformer.h.1.ln_2.bias");
  EXPECT_EQ(import_error(m), file + ": tensor 'h.1.ln_2.bias' (or 'transformer.h.1.ln_2.bias') is missing");
  m = good;
  m["transformer.h.0.attn.c_proj.weight"].shape = {3, 12};
  EXPECT_EQ(import_error(m), file + ": tensor 'transformer.h.0.attn.c_proj.weight' has shape [3, 12], " +
                                 sub("a/config.json") + " implies [6, 6]");
  m = good;
  m["transformer.h.2.ln_1.weight"] = {{6}, std::vector<float>(6)};
  EXPECT_NE(import_error(m).find("tensor 'transformer.h.2.ln_1.weight' is not a parameter"), std::string::npos);
  m = good;
  m["wpe.weight"] = m["transformer.wpe.weight"];
  EXPECT_NE(import_error(m).find("both with and without the 'transformer.' prefix"), std::string::npos);
}

TEST_F(HfGpt2, RejectsConfigsWeDoNotImplement) {
  export_hf_gpt2(params_, cfg_, sub("a"));
  const std::string path = sub("a/config.json"), good = text_of(path);
  struct Case {
    std::string from, to, expect;
  };
  const Case cases[] = {
      {"\"gelu_new\"", "\"relu\"", "key \"activation_function\" is \"relu\""},
      {"\"model_type\": \"gpt2\"", "\"model_type\": \"llama\"", "key \"model_type\" is \"llama\""},
      {"1e-05", "1e-06", "key \"layer_norm_epsilon\" must be 1e-05"},
      {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "key \"tie_word_embeddings\" is false"},
      {"\"n_inner\": null", "\"n_inner\": 10", "key \"n_inner\" must be null or 4 * n_embd"},
      {"\"n_head\": 2", "\"n_head\": 4", "key \"n_embd\" is not divisible"},
      {"\"n_layer\": 2", "\"n_layer\": 0", "key \"n_layer\" must be a positive integer"},
      {"\"n_positions\": 5,", "", "key \"n_positions\" is missing"},
      {"\"scale_attn_weights\": true", "\"scale_attn_weights\": false", "key \"scale_attn_weights\" is false"},
      {"{", "[", "bad JSON at byte"},
  };
  for (const Case& c : cases) {
    std::string text = good;
    replace(text, c.from, c.to);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    const std::string e = error_of([&] { import_hf_gpt2(sub("a")); });
    EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << e;
  }
  std::string text = good;
  replace(text, "\"gelu_new\"", "\"gelu_pytorch_tanh\"");  // the same function, fused in torch
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  EXPECT_NO_THROW(import_hf_gpt2(sub("a")));
}

TEST_F(HfGpt2, ExportRejectsParamsThatDisagreeWithTheConfig) {
  TensorMap m = params_;
  m.erase("wpe");
  EXPECT_EQ(error_of([&] { export_hf_gpt2(m, cfg_, sub("a")); }), "export_hf_gpt2: parameter 'wpe' is missing");
  m = params_;
  m["lnf.bias"].shape = {2, 3};
  EXPECT_NE(error_of([&] { export_hf_gpt2(m, cfg_, sub("a")); }).find("'lnf.bias' has shape [2, 3]"), std::string::npos);
  m = params_;
  m["adam.m.wte"] = m["wte"];
  EXPECT_EQ(error_of([&] { export_hf_gpt2(m, cfg_, sub("a")); }), "export_hf_gpt2: 'adam.m.wte' is not a GPT-2 parameter");
  EXPECT_FALSE(fs::exists(sub("a")));
}

}  // namespace
}  // namespace gpt
