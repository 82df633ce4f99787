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

namespace gpt {
namespace {

// An MoE model's plan against a count by hand: 2 blocks, block 1 MoE (moe.every 2),
// C 16, NH 2, V 50, block_size 8; 4 experts of H 24, top-2, one shared expert (S H 24),
// capacity factor 0.75; one micro-batch of B 2 x T 8 = 16 tokens, fp32 on the CPU.
TEST(MemoryPlan, MoeTermsMatchAHandCount) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 16, cfg.vocab_size = 50, cfg.block_size = 8;
  cfg.moe.experts = 4, cfg.moe.top_k = 2, cfg.moe.expert_hidden = 24, cfg.moe.shared_experts = 1;
  cfg.moe.capacity_factor = 0.75f, cfg.moe_every = 2;
  // Parameters: embeddings 50 x 16 + 8 x 16 = 928, the final LayerNorm 32, the dense block
  // 12 C^2 + 13 C = 3280; the MoE block its LayerNorms and attention 4 C^2 + 8 C = 1152,
  // the router 4 x 16 = 64, 4 experts of 24 x 16 + 24 + 16 x 24 + 16 = 808 each, and the
  // shared expert, as wide as one expert, 808.
  const size_t experts = 4 * 808, N = 928 + 32 + 3280 + 1152 + 64 + experts + 808;  // 9496
  const MemoryPlan one = plan_memory(cfg, 2, 8, Recompute::None, 1);
  EXPECT_EQ(one.param_count, int64_t(N));
  EXPECT_EQ(one.params, N * 4);
  EXPECT_EQ(one.grads, N * 4);
  EXPECT_EQ(one.optimizer, 2 * N * 4);  // AdamW m and v
  // Activations, bytes over the 16 tokens. The dense block keeps 15 C and 6 statistics a
  // token: 16 x 246 x 4 = 15744. The MoE block keeps its attention half, 3 C + 4 C and
  // the 6 statistics, 16 x 118 x 4 = 7552, and the MoE layer's buffers: capacity
  // ceil(0.75 x 8 x 2 / 4) = 3 slots per expert per sequence, so 2 x 4 x 3 = 24 rows
  // (fewer than N k = 32) of in, pre, act and out (2 x 16 + 2 x 24 = 80 floats), the
  // router's logits and probs 16 x 2 x 4, the shared expert's pre and act 16 x 2 x 24:
  // (1920 + 128 + 768) x 4 = 11264. Per micro-batch: the residual stream at 3 block
  // boundaries, its gradient, the final norm's output and gradient (6 C) and 2
  // statistics, 16 x (96 x 4 + 8) = 6272. Backward scratch: the dense block's d(ln) C
  // and d(qkv), d(atty), d(fc) 8 C, 16 x 144 x 4 = 9216; the MoE layer's d(out),
  // d(pre), d(in) per row, 24 x 56, and d(shared pre), dx_part, d(logits),
  // 16 x (24 + 16 + 4): (1344 + 704) x 4 = 8192.
  EXPECT_EQ(one.activations, size_t(15744 + 7552 + 11264 + 6272 + 9216 + 8192));
  // Expert parallelism over 2 of 4 ZeRO-1 data-parallel ranks: a rank holds 2 of the 4
  // experts (1616 parameters fewer); the other 6264 parameters' AdamW state (m, v and
  // the reduced gradient shard) splits over the 4 ranks, 1566 each, the experts' over
  // the 2 ranks holding the same experts, 808 each. Activations: the layer keeps its 24
  // routed rows in and out (2 C) and runs its 2 experts on every rank's rows for them, at
  // most 2 ranks x min(16 tokens x 2, 2 sequences x 2 experts x 3 slots) = 24 rows of in,
  // pre, act, out: 24 x (32 + 80) floats beside the router's and shared expert's 896,
  // 3072 bytes more than above; backward d(out), d(in) of the routed rows, d(pre), d(out),
  // d(in) of the experts' rows and a 24-row staging buffer, 24 x (32 + 56 + 16) floats
  // beside the 704, 4608 bytes more; and the layer's own 24-row forward staging buffer,
  // 1536 bytes.
  const MemoryPlan ep = plan_memory(cfg, 2, 8, Recompute::None, 4, DType::F32, Device::CPU, 1, PlanStage{}, false, 2);
  EXPECT_EQ(ep.param_count, int64_t(N - experts / 2));
  EXPECT_EQ(ep.params, (N - experts / 2) * 4);
  EXPECT_EQ(ep.grads, (N - experts / 2) * 4);
  EXPECT_EQ(ep.optimizer, size_t(3 * 1566 + 3 * 808) * 4);
  EXPECT_EQ(ep.activations, one.activations + 3072 + 4608 + 1536);
  // Dropless (capacity factor 0): N k = 32 rows, 8 more than above, 80 + 56 floats each.
  cfg.moe.capacity_factor = 0.f;
  EXPECT_EQ(plan_memory(cfg, 2, 8, Recompute::None, 1).activations, one.activations + 8 * (80 + 56) * 4);
}

// The MoE plan against what the allocator saw during one training step, with the dense
// test's tolerance (MatchesTheAllocatorsPeak): capacity-bound and dropless buffers, with
// and without a shared expert, and every block MoE (no dense MLP scratch).
TEST(MemoryPlan, MoeMatchesTheAllocatorsPeak) {
  struct Case {
    float capacity_factor;
    int64_t shared;
    int every;
  };
  for (const Case c : {Case{1.25f, 0, 2}, Case{0.5f, 1, 2}, Case{0.f, 0, 1}}) {
    GPTConfig cfg;
    cfg.n_layer = 4, cfg.n_head = 4, cfg.n_embd = 64, cfg.vocab_size = 211, cfg.block_size = 32;
    cfg.moe.experts = 4, cfg.moe.top_k = 2, cfg.moe.expert_hidden = 96, cfg.moe.shared_experts = c.shared;
    cfg.moe.capacity_factor = c.capacity_factor, cfg.moe.aux_loss = 0.01f, cfg.moe.z_loss = 1e-3f;
    cfg.moe_every = c.every;
    const int B = 4, T = 32;
    reset_peak_memory(Device::CPU);
    const size_t start = memory_stats(Device::CPU).current;
    {
      ParamStore store;
      GPT model(cfg, store, Recompute::None);
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
    const double planned = double(plan_memory(cfg, B, T, Recompute::None, 1).total());
    EXPECT_NEAR(measured / planned, 1.0, 0.01)
        << "capacity factor " << c.capacity_factor << ", shared " << c.shared << ", every " << c.every;
  }
}

}  // namespace
}  // namespace gpt
