// The LLaMA model's machinery against its own whole, unrecomputed, unsplit backward
// (PyTorch equality is torch_equality_test): recomputation and the zero-bubble split
// give bit-identical gradients, pipeline stages chained by hand equal the whole model,
// the memory plan matches the allocator, and bad configurations are named in one line.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "core/adamw.h"
#include "core/model/llama.h"
#include "core/model/make_model.h"
#include "core/model/memory_plan.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

GPTConfig small_llama() {
  GPTConfig cfg;
  cfg.family = ModelFamily::Llama;
  cfg.n_layer = 3, cfg.n_head = 6, cfg.n_kv_head = 2, cfg.n_embd = 48, cfg.ffn_hidden = 72;
  cfg.vocab_size = 97, cfg.block_size = 24, cfg.tie_embeddings = false;
  return cfg;
}

constexpr int B = 3, T = 21;

void fill_batch(Tensor& tokens, Tensor& targets) {
  Rng rng(11);
  for (int i = 0; i < B * T; ++i) {
    tokens.i32()[i] = int32_t(rng.next_u64() % 97);
    targets.i32()[i] = int32_t(rng.next_u64() % 97);
  }
}

struct Result {
  float loss;
  std::map<std::string, std::vector<float>> grads;  // by global name
};

// Two steps' forward and backward on one batch (the second reuses every buffer the
// first sized), whole (split = false) or as backward_input then backward_weight.
Result train_once(const GPTConfig& cfg, Recompute mode, bool split) {
  ParamStore store;
  auto model = make_model(cfg, store, mode);
  store.materialize(Device::CPU);
  store.init(7);
  Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
  fill_batch(tokens, targets);
  Result r;
  auto acts = model->make_activations();
  for (int pass = 0; pass < 2; ++pass) {
    store.zero_grads();
    r.loss = model->forward_train(*acts, tokens, &targets, 1.f / (B * T));
    if (split) {
      model->backward_input(*acts, nullptr);
      model->backward_weight(*acts);
    } else {
      model->backward(*acts, nullptr);
    }
  }
  for (int i = 0; i < store.size(); ++i) r.grads[store.at(i).name] = to_host_f32(store.at(i).grad);
  return r;
}

void expect_bit_identical(const Result& got, const Result& want) {
  EXPECT_EQ(got.loss, want.loss);
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (const auto& [name, g] : want.grads) {
    const std::vector<float>& o = got.grads.at(name);
    ASSERT_EQ(o.size(), g.size()) << name;
    EXPECT_EQ(std::memcmp(o.data(), g.data(), g.size() * 4), 0) << name;
  }
}

TEST(LlamaModel, RecomputeAndSplitBackwardAreBitIdentical) {
  for (bool tied : {false, true}) {
    GPTConfig cfg = small_llama();
    cfg.tie_embeddings = tied;
    const Result none = train_once(cfg, Recompute::None, false);
    EXPECT_EQ(none.grads.count("lm_head"), tied ? 0u : 1u);
    expect_bit_identical(train_once(cfg, Recompute::Selective, false), none);
    expect_bit_identical(train_once(cfg, Recompute::Full, false), none);
    expect_bit_identical(train_once(cfg, Recompute::None, true), none);
  }
}

// Two stages chained by hand: [0, 2) with the embedding, [2, 3) with the head; each
// draws its parameters from their global names, so together they are the whole model.
TEST(LlamaModel, StagesChainedEqualTheWholeModel) {
  const GPTConfig cfg = small_llama();
  const Result whole = train_once(cfg, Recompute::None, false);
  ParamStore s0, s1;
  auto first = make_model(cfg, s0, Recompute::None, StageSpec{0, 2, true, false});
  auto last = make_model(cfg, s1, Recompute::None, StageSpec{2, 3, false, true});
  for (ParamStore* s : {&s0, &s1}) s->materialize(Device::CPU), s->init(7);
  Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
  fill_batch(tokens, targets);
  auto a0 = first->make_activations(), a1 = last->make_activations();
  Result r;
  for (int pass = 0; pass < 2; ++pass) {
    s0.zero_grads(), s1.zero_grads();
    EXPECT_TRUE(std::isnan(first->forward_train(*a0, tokens, nullptr, 1.f / (B * T))));
    r.loss = last->forward_train(*a1, a0->output, &targets, 1.f / (B * T));
    last->backward(*a1, nullptr);
    first->backward(*a0, &a1->input_grad);
  }
  for (ParamStore* s : {&s0, &s1})
    for (int i = 0; i < s->size(); ++i) r.grads[s->at(i).name] = to_host_f32(s->at(i).grad);
  expect_bit_identical(r, whole);
}

// The start-up memory plan against what the allocator saw during one training step.
TEST(LlamaModel, MemoryPlanMatchesTheAllocatorsPeak) {
  for (Recompute mode : {Recompute::None, Recompute::Selective, Recompute::Full}) {
    const GPTConfig cfg = small_llama();
    reset_peak_memory(Device::CPU);
    const size_t start = memory_stats(Device::CPU).current;
    {
      ParamStore store;
      auto model = make_model(cfg, store, mode);
      store.materialize(Device::CPU);
      store.init(3);
      AdamW opt(store, AdamWConfig{});
      Tensor tokens = zeros({B, T}, DType::I32), targets = zeros({B, T}, DType::I32);
      auto acts = model->make_activations();
      model->forward_train(*acts, tokens, &targets, 1.f / (B * T));
      model->backward(*acts, nullptr);
      opt.step(1e-3f);
      EXPECT_EQ(store.total(), cfg.num_params());
    }
    const double measured = double(memory_stats(Device::CPU).peak - start);
    const double planned = double(plan_memory(cfg, B, T, mode, 1).total());
    EXPECT_NEAR(measured / planned, 1.0, 0.01) << "mode " << int(mode);
  }
}

TEST(LlamaConfig, BadConfigurationsNameTheKey) {
  auto bad = [](auto edit) {
    GPTConfig c = small_llama();
    edit(c);
    return error_of([&] { c.validate(); });
  };
  EXPECT_EQ(bad([](GPTConfig& c) { c.n_kv_head = 4; }),
            "config key 'model.n_head' (6) is not divisible by 'model.n_kv_head' (4)");
  EXPECT_EQ(bad([](GPTConfig& c) { c.n_embd = 42; }),  // head size 7
            "config key 'model.n_head': head size n_embd / n_head = 42 / 6 = 7 is odd, and RoPE rotates pairs of channels");
  EXPECT_EQ(error_of([] { parse_family("mistral"); }), "config key 'model.family' must be gpt2 or llama, got 'mistral'");
  // GPT-2 refuses the keys it would otherwise ignore.
  GPTConfig g;
  g.n_kv_head = 2;
  EXPECT_NE(error_of([&] { g.validate(); }).find("config key 'model.n_kv_head' (2) needs model.family = llama"),
            std::string::npos);
  g = GPTConfig{};
  g.tie_embeddings = false;
  EXPECT_NE(error_of([&] { g.validate(); }).find("config key 'model.tie_embeddings'"), std::string::npos);
}

// The published shapes' parameter counts (Hugging Face's model cards).
TEST(LlamaConfig, PresetsHaveThePublishedParameterCounts) {
  EXPECT_EQ(gpt_preset("llama3-8B").num_params(), 8030261248);
  EXPECT_EQ(gpt_preset("llama2-7B").num_params(), 6738415616);
  EXPECT_EQ(gpt_preset("llama-1B").num_params(), 1235814400);
}

}  // namespace
}  // namespace gpt
