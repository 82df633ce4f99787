// Tensor parallelism against one process (picotron's way): every rank runs the whole
// single-device GPT as the reference, then the same model split over the world as one
// TP group by TensorParallelPlan, from the same seed, on the same batch. The TP model's
// loss equals the reference's, and each rank's parameter gradients equal the slice of
// the reference gradients that rank holds, within fp32 rounding (the split changes the
// order of sums inside the matmuls, nothing else). The TP group's traffic equals the
// analytic count and the parameters per rank the hand-counted split.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/model/gpt.h"
#include "core/model/memory_plan.h"
#include "core/rng.h"
#include "parallel/communicator.h"
#include "parallel/tensor/tp_linear.h"

namespace gpt::parallel {
namespace {

constexpr uint64_t kSeed = 3;

struct Outcome {
  std::vector<float> losses;
  std::vector<std::vector<float>> grads;   // per parameter, local
  size_t peak_bytes = 0;                   // tensor memory at the peak of the two micro-batches
};

// Two micro-batches of forward_train + backward (gradients accumulate), fp32 or bf16.
Outcome train(const GPTConfig& cfg, int B, int T, const LinearFactory* plan, ParamStore& store,
              Recompute mode = Recompute::None) {
  reset_peak_memory(Device::CPU);
  const size_t start = memory_stats(Device::CPU).current;
  GPT model(cfg, store, mode, StageSpec{}, plan);
  store.materialize(Device::CPU);
  store.init(kSeed);
  // Biases and LayerNorms start constant; give every element its own value (by global
  // index, so both layouts agree) so that e.g. a bias added on every rank would show.
  for (int i = 0; i < store.size(); ++i) {
    Param& p = store.at(i);
    std::vector<float> v = to_host_f32(p.value);
    for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t local, int64_t global, int64_t n) {
      for (int64_t k = 0; k < n; ++k) v[size_t(local + k)] += 0.05f * counter_normal(hash_string(p.name), uint64_t(global + k));
    });
    from_host_f32(p.value, v.data());
  }
  store.zero_grads();
  auto acts = model.make_activations();
  Rng rng(17);
  Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
  Outcome o;
  for (int m = 0; m < 2; ++m) {
    for (int i = 0; i < B * T; ++i) {
      tokens.i32()[i] = int32_t(rng.next_u64() % uint64_t(cfg.vocab_size));
      targets.i32()[i] = int32_t(rng.next_u64() % uint64_t(cfg.vocab_size));
    }
    o.losses.push_back(model.forward_train(*acts, tokens, &targets, 1.f / float(2 * B * T)));
    model.backward(*acts, nullptr);
  }
  o.peak_bytes = memory_stats(Device::CPU).peak - start;
  for (int i = 0; i < store.size(); ++i) o.grads.push_back(to_host_f32(store.at(i).grad));
  return o;
}

// The elements of `whole` (a global tensor) that a shard holds, in local order.
std::vector<float> slice_of(const std::vector<float>& whole, const Param& p) {
  std::vector<float> out(size_t(p.numel()));
  for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t local, int64_t global, int64_t n) {
    std::copy(whole.begin() + global, whole.begin() + global + n, out.begin() + local);
  });
  return out;
}

void expect_tp_equals_one_process(const GPTConfig& cfg, int B, int T, Recompute mode = Recompute::None) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
  std::vector<int> all(size_t(comm->world_size()));
  for (int r = 0; r < comm->world_size(); ++r) all[size_t(r)] = r;
  Group g = comm->make_group("tp", {all});
  TpRegion tp(*comm, g);
  TensorParallelPlan plan(tp);

  ParamStore whole_store, tp_store;
  const Outcome whole = train(cfg, B, T, nullptr, whole_store);
  comm->traffic().reset();
  const Outcome split = train(cfg, B, T, &plan, tp_store, mode);

  // Traffic equals the formula: per micro-batch and layer, one all-reduce of B*T*C fp32
  // activations after each row-parallel linear forward (2) and one of the input gradient
  // of each column-parallel linear backward (2); full recomputation reruns the forward's
  // two. Ring all-reduce: 2 (n-1)/n of the bytes per rank. Embedding and head are
  // replicated: no traffic.
  const int n = comm->world_size();
  const double act_bytes = double(B) * T * cfg.n_embd * 4;
  const int per_layer = mode == Recompute::Full ? 6 : 4;
  const double want_bytes = 2.0 * cfg.n_layer * per_layer * 2.0 * (n - 1) / n * act_bytes;
  const TrafficCount got = comm->traffic().get("tp", "allreduce");
  EXPECT_EQ(got.calls, 2 * cfg.n_layer * per_layer);
  EXPECT_DOUBLE_EQ(got.bytes, want_bytes);
  if (comm->world_rank() == 0)
    std::printf("[traffic] tp %d: %lld all-reduces, %.0f bytes per rank (formula %.0f)\n", n,
                (long long)got.calls, got.bytes, want_bytes);

  // Parameters per rank: the split tensors divide by n, the replicated ones (embeddings,
  // LayerNorms, row-parallel biases) stay whole; counted here from the shapes by hand.
  const int64_t C = cfg.n_embd, L = cfg.n_layer;
  const int64_t split_per_layer = 3 * C * C + 3 * C + C * C + 4 * C * C + 4 * C + 4 * C * C;
  const int64_t replicated = int64_t(cfg.vocab_size) * C + int64_t(cfg.block_size) * C + L * (6 * C) + 2 * C;
  EXPECT_EQ(whole_store.total(), L * split_per_layer + replicated);
  EXPECT_EQ(tp_store.total(), L * split_per_layer / n + replicated);

  // The memory plan per rank under TP against the allocator's peak (no optimizer here;
  // the plan leaves out only the caller's int token tensors, 2 B T ints).
  const MemoryPlan mp = plan_memory(cfg, B, T, mode, 1, DType::F32, Device::CPU, n);
  const double planned = double(mp.total() - mp.optimizer) + 2.0 * B * T * 4;
  EXPECT_NEAR(double(split.peak_bytes) / planned, 1.0, 0.01)
      << "measured " << split.peak_bytes << " planned " << planned;

  for (size_t m = 0; m < whole.losses.size(); ++m)
    EXPECT_NEAR(split.losses[m], whole.losses[m], 1e-5 * std::fabs(whole.losses[m])) << "micro-batch " << m;
  ASSERT_EQ(tp_store.size(), whole_store.size());
  int sharded = 0;
  for (int i = 0; i < tp_store.size(); ++i) {
    const Param& p = tp_store.at(i);
    const Param* w = whole_store.find(p.name);
    ASSERT_NE(w, nullptr) << p.name;
    ASSERT_EQ(p.global_shape, w->global_shape) << p.name;
    if (p.shard.sharded()) ++sharded;
    const std::vector<float> want = slice_of(whole.grads[size_t(i)], p);
    const std::vector<float>& got = split.grads[size_t(i)];
    double diff = 0, scale = 1e-30;
    for (size_t k = 0; k < want.size(); ++k) {
      diff = std::max(diff, std::fabs(double(got[k]) - double(want[k])));
      scale = std::max(scale, std::fabs(double(want[k])));
    }
    EXPECT_LE(diff / scale, 1e-5) << "gradient of " << p.name << " (" << p.shard.describe() << ")";
  }
  // Every block's four weights and two column-parallel biases are split.
  EXPECT_EQ(sharded, cfg.n_layer * 6);
}

TEST(TensorParallel, GptSplitOverTheWorldEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 32, cfg.vocab_size = 101, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 2, 16);
}

// Odd head size (60 / 4 = 15), a vocabulary and T that are not powers of two.
TEST(TensorParallel, AwkwardShapeEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 60, cfg.vocab_size = 509, cfg.block_size = 23;
  expect_tp_equals_one_process(cfg, 3, 19);
}

// Recomputation reruns the forward, collectives included, and still matches.
TEST(TensorParallel, FullRecomputationEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 32, cfg.vocab_size = 101, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 2, 16, Recompute::Full);
}

}  // namespace
}  // namespace gpt::parallel
