// Activation recomputation: the same loss and bit-identical gradients in every mode,
// with less activation memory held between forward and backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/adamw.h"
#include "core/model/gpt.h"
#include "core/model/memory_plan.h"
#include "core/ops.h"
#include "core/rng.h"

namespace gpt {
namespace {

struct Result {
  float loss;
  std::vector<float> grads;
};

Result train_once(Recompute mode) {
  GPTConfig cfg;
  cfg.n_layer = 3, cfg.n_head = 4, cfg.n_embd = 48, cfg.vocab_size = 97, cfg.block_size = 24;
  const int B = 3, T = 21;
  ParamStore store;
  GPT model(cfg, store, mode);
  store.materialize(Device::CPU);
  store.init(7);
  Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
  Rng rng(11);
  for (int i = 0; i < B * T; ++i) {
    tokens.i32()[i] = int32_t(rng.next_u64() % 97);
    targets.i32()[i] = int32_t(rng.next_u64() % 97);
  }
  Result r;
  auto acts = model.make_activations();
  // Two steps on the same batch: the second reuses every buffer the first sized.
  for (int pass = 0; pass < 2; ++pass) {
    store.zero_grads();
    r.loss = model.forward_train(*acts, tokens, &targets, 1.f / (B * T));
    model.backward(*acts, nullptr);
  }
  r.grads = to_host_f32(store.flat_grads());
  return r;
}

TEST(Recompute, GradientsAreBitIdenticalAndMemoryShrinks) {
  Result none = train_once(Recompute::None);
  Result sel = train_once(Recompute::Selective);
  Result full = train_once(Recompute::Full);
  for (const Result* r : {&sel, &full}) {
    EXPECT_EQ(r->loss, none.loss);
    ASSERT_EQ(r->grads.size(), none.grads.size());
    EXPECT_EQ(std::memcmp(r->grads.data(), none.grads.data(), none.grads.size() * 4), 0);
  }
}

// Held activation memory, measured from the allocator after the first forward:
// per block none keeps 15 C floats per token, selective 9 C (+ 6 C shared), full 0 (+ 15 C shared).
TEST(Recompute, ActivationMemoryFollowsTheMode) {
  auto held = [](Recompute mode) {
    GPTConfig cfg;
    cfg.n_layer = 4, cfg.n_head = 2, cfg.n_embd = 32, cfg.vocab_size = 64, cfg.block_size = 16;
    ParamStore store;
    GPT model(cfg, store, mode);
    store.materialize(Device::CPU);
    store.init(1);
    Tensor tokens = zeros({2, 16}, DType::I32), targets = zeros({2, 16}, DType::I32);
    size_t before = memory_stats(Device::CPU).current;
    auto acts = model.make_activations();
    model.forward(*acts, tokens, &targets);
    return memory_stats(Device::CPU).current - before;
  };
  size_t none = held(Recompute::None), sel = held(Recompute::Selective), full = held(Recompute::Full);
  EXPECT_GT(none, sel);
  EXPECT_GT(sel, full);
  // Per token, each block keeps 15 C activations + NH softmax statistics + 4 LayerNorm
  // mean/rstd under none; full keeps one shared set; selective shares the 6 C of
  // LayerNorm and GELU outputs (it keeps the statistics per block, like none).
  const size_t tok = 2 * 16, C = 32, NH = 2, L = 4;
  EXPECT_EQ(none - full, (L - 1) * (15 * C + NH + 4) * tok * 4);
  EXPECT_EQ(none - sel, (L - 1) * 6 * C * tok * 4);
}

}  // namespace
}  // namespace gpt

namespace gpt {
namespace {

// The start-up memory plan against what the allocator saw during one training step
// (forward, backward, AdamW) in every recompute mode.
TEST(MemoryPlan, MatchesTheAllocatorsPeak) {
  for (Recompute mode : {Recompute::None, Recompute::Selective, Recompute::Full}) {
    GPTConfig cfg;
    cfg.n_layer = 3, cfg.n_head = 4, cfg.n_embd = 64, cfg.vocab_size = 211, cfg.block_size = 32;
    const int B = 4, T = 32;
    reset_peak_memory(Device::CPU);
    const size_t start = memory_stats(Device::CPU).current;
    {
      ParamStore store;
      GPT model(cfg, store, mode);
      store.materialize(Device::CPU);
      store.init(3);
      AdamW opt(store, AdamWConfig{});
      Tensor tokens = zeros({B, T}, DType::I32), targets = zeros({B, T}, DType::I32);
      auto acts = model.make_activations();
      model.forward_train(*acts, tokens, &targets, 1.f / (B * T));
      model.backward(*acts, nullptr);
      opt.step(1e-3f);
    }
    const double measured = double(memory_stats(Device::CPU).peak - start);
    const double planned = double(plan_memory(cfg, B, T, mode, 1).total());
    // The plan leaves out only the int token tensors of the caller (here 2 B T ints).
    EXPECT_NEAR(measured / planned, 1.0, 0.01) << "mode " << int(mode);
  }
}

}  // namespace
}  // namespace gpt

namespace gpt {
namespace {

// The fused classifier in chunks of rows: the same loss and gradients as one chunk
// (up to summation order in the wte gradient), and a peak smaller by exactly the logits
// rows it no longer holds.
TEST(FusedClassifier, ChunksBoundTheLogitsAndKeepTheGradients) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 32, cfg.vocab_size = 301, cfg.block_size = 16;
  const int B = 4, T = 16, N = B * T;
  struct Run {
    float loss;
    std::vector<float> grads;
    size_t peak;
  };
  auto run = [&](int64_t rows) {
    ParamStore store;
    GPT model(cfg, store);
    model.set_head_chunk_rows(rows);
    store.materialize(Device::CPU);
    store.init(5);
    Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
    Rng rng(9);
    for (int i = 0; i < N; ++i) {
      tokens.i32()[i] = int32_t(rng.next_u64() % 301);
      targets.i32()[i] = i % 5 == 0 ? -1 : int32_t(rng.next_u64() % 301);  // some ignored
    }
    store.zero_grads();
    reset_peak_memory(Device::CPU);
    const size_t start = memory_stats(Device::CPU).current;
    Run r;
    auto acts = model.make_activations();
    r.loss = model.forward_train(*acts, tokens, &targets, 1.f / N);
    model.backward(*acts, nullptr);
    r.peak = memory_stats(Device::CPU).peak - start;
    r.grads = to_host_f32(store.flat_grads());
    return r;
  };
  const Run whole = run(N), chunked = run(9);
  EXPECT_NEAR(chunked.loss, whole.loss, 1e-6 * std::fabs(whole.loss));
  double worst = 0, scale = 0;
  for (size_t i = 0; i < whole.grads.size(); ++i) {
    worst = std::max(worst, double(std::fabs(chunked.grads[i] - whole.grads[i])));
    scale = std::max(scale, double(std::fabs(whole.grads[i])));
  }
  EXPECT_LE(worst / scale, 1e-6);
  EXPECT_EQ(whole.peak - chunked.peak, size_t(N - 9) * 301 * 4);
}

}  // namespace
}  // namespace gpt
