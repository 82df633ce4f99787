// Tensor parallelism against one process (picotron's way): every rank runs the whole
// single-device GPT as the reference, then the same model split over the world as one
// TP group by TensorParallelPlan, from the same seed, on the same batch. The TP model's
// loss equals the reference's, and each rank's parameter gradients equal the slice of
// the reference gradients that rank holds, within fp32 rounding (the split changes the
// order of sums inside the matmuls, nothing else). The TP group's traffic equals the
// analytic count and the parameters per rank the hand-counted split.
//
// The embedding and the tied head are vocabulary-parallel: wte's rows are split (padded
// to a multiple of 64 tp, core/layers/token_embedding.h), so every vocabulary here is one
// that no tp divides, and at tp 4 some have a rank whose rows are all padding. Its
// gradients (the slice each rank holds, padding included: zero) equal the reference's,
// and so do the evaluation loss and a sampled row of logits; no rank allocates logits
// over the whole vocabulary.
//
// Sequence parallelism (the *SequenceParallel tests): the same comparison with each rank
// holding B*T/tp rows of the residual stream; the norms' gradients, partial over a rank's
// rows, are summed over the group once after the micro-batches (NormGradSum, as the
// trainer does before the data-parallel reduction). The traffic and the memory plan are
// checked from the same first principles, with SP's collectives and buffers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "core/model/gpt.h"
#include "core/model/memory_plan.h"
#include "core/rng.h"
#include "launch/generate.h"
#include "parallel/communicator.h"
#include "parallel/tensor/sequence_grads.h"
#include "parallel/tensor/tp_linear.h"

namespace gpt::parallel {
namespace {

constexpr uint64_t kSeed = 3;

struct Outcome {
  std::vector<float> losses;
  std::vector<std::vector<float>> grads;   // per parameter, local
  size_t peak_bytes = 0;                   // tensor memory at the peak of the two micro-batches
  size_t largest_bytes = 0;                // the largest single allocation, evaluation included
  TrafficCount allreduce, allgather, reduce_scatter;  // on the TP group during the two micro-batches
  float eval_loss = 0;                     // forward with targets, after training
  std::vector<float> last_logits;          // forward without targets: the last position's V logits
};

// Two micro-batches of forward_train + backward (gradients accumulate), then an
// evaluation forward with and without targets. head_rows: the head's chunk (0: default).
// after_backward (optional) runs after the two backwards, before gradients are read.
Outcome train(const GPTConfig& cfg, int B, int T, const LinearFactory* plan, ParamStore& store,
              Recompute mode = Recompute::None, Communicator* comm = nullptr, int64_t head_rows = 0,
              const std::function<void()>& after_backward = {}) {
  reset_peak_memory(Device::CPU);
  const size_t start = memory_stats(Device::CPU).current;
  GPT model(cfg, store, mode, StageSpec{}, plan);
  model.set_head_chunk_rows(head_rows);
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
  if (after_backward) after_backward();
  o.peak_bytes = memory_stats(Device::CPU).peak - start;
  for (int i = 0; i < store.size(); ++i) o.grads.push_back(to_host_f32(store.at(i).grad));
  if (comm) {
    o.allreduce = comm->traffic().get("tp", "allreduce");
    o.allgather = comm->traffic().get("tp", "allgather");
    o.reduce_scatter = comm->traffic().get("tp", "reduce_scatter");
  }
  o.eval_loss = model.forward(*acts, tokens, &targets);
  model.forward(*acts, tokens, nullptr);
  o.last_logits = model.vocabulary_logits(*acts, int64_t(B) * T - 1);
  o.largest_bytes = memory_stats(Device::CPU).largest;
  return o;
}

// max |got - want| / max |want| (the scale of the tensor; 1e-30 for an all-zero want).
double relative_diff(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0, scale = 1e-30;
  for (size_t k = 0; k < want.size() && k < got.size(); ++k) {
    diff = std::max(diff, std::fabs(double(got[k]) - double(want[k])));
    scale = std::max(scale, std::fabs(double(want[k])));
  }
  return diff / scale;
}

// Vp: the rows wte is split as, V rounded up to whole 64-row slices per rank (by hand).
int64_t padded_rows(int64_t V, int n) { return (V + 64 * n - 1) / (64 * n) * (64 * n); }

// The elements of `whole` (a global tensor) that a shard holds, in local order.
std::vector<float> slice_of(const std::vector<float>& whole, const Param& p) {
  std::vector<float> out(size_t(p.numel()));
  for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t local, int64_t global, int64_t n) {
    std::copy(whole.begin() + global, whole.begin() + global + n, out.begin() + local);
  });
  return out;
}

// The memory plan per rank against the allocator's peak (no optimizer here; the plan
// leaves out only the caller's int token tensors, 2 B T ints). Its logits term is one
// chunk of this rank's Vp/n columns (plus the losses and the gathered statistics), never
// B T V. Returns the planned bytes.
double expect_plan_matches_peak(const GPTConfig& cfg, int B, int T, Recompute mode, int64_t head_rows, int n,
                                const Outcome& split, bool sp) {
  const int64_t N = int64_t(B) * T, Vp = padded_rows(cfg.vocab_size, n);
  const MemoryPlan mp = plan_memory(cfg, B, T, mode, 1, DType::F32, Device::CPU, n, PlanStage{}, sp);
  const double planned = double(mp.total() - mp.optimizer) + 2.0 * B * T * 4;
  if (head_rows == 0) {
    EXPECT_NEAR(double(split.peak_bytes) / planned, 1.0, 0.01)
        << "measured " << split.peak_bytes << " planned " << planned;
    EXPECT_EQ(mp.logits, size_t(N * (Vp / n) * 4 + N * 4 + n * 3 * N * 4));
  }
  return planned;
}

// Traffic equals the formula. Per micro-batch, all-reduces of B*T*C fp32 activations:
//  * per layer one after each row-parallel linear forward (2) and one of the input
//    gradient of each column-parallel linear backward (2); full recomputation reruns
//    the forward's two;
//  * the embedding's output (reduce_from_tp_region: each rank looked up its rows);
//  * the head's input gradient (copy_to_tp_region backward: each rank's dx covers its
//    vocabulary columns), once for all chunks.
// Ring all-reduce: 2 (n-1)/n of the bytes per rank. And per chunk of the head one
// all-gather of the softmax statistics, 3 fp32 per row and rank (max, sum-exp, target
// logit): a rank sends its own 3 rows' worth to the n-1 others, (n-1) 3 B T 4 bytes
// over all chunks.
void expect_tensor_parallel_traffic_and_memory(const GPTConfig& cfg, int B, int T, Recompute mode,
                                               int64_t head_rows, int n, const Outcome& split, bool speak) {
  const int64_t N = int64_t(B) * T;
  const double act_bytes = double(N) * cfg.n_embd * 4;
  const int per_layer = mode == Recompute::Full ? 6 : 4;
  const int64_t allreduces = 2 * (cfg.n_layer * per_layer + 2);
  const double want_bytes = double(allreduces) * 2.0 * (n - 1) / n * act_bytes;
  const int64_t chunks = head_rows > 0 ? (N + head_rows - 1) / head_rows : 1;
  const double want_gather = 2.0 * (n - 1) * 3 * double(N) * 4;
  EXPECT_EQ(split.allreduce.calls, allreduces);
  EXPECT_DOUBLE_EQ(split.allreduce.bytes, want_bytes);
  EXPECT_EQ(split.allgather.calls, 2 * chunks);
  EXPECT_DOUBLE_EQ(split.allgather.bytes, want_gather);
  EXPECT_EQ(split.reduce_scatter.calls, 0);
  const double planned = expect_plan_matches_peak(cfg, B, T, mode, head_rows, n, split, false);
  if (speak)
    std::printf("[traffic] tp %d: %lld all-reduces, %.0f bytes per rank (formula %.0f); %lld all-gathers, "
                "%.0f bytes (formula %.0f); memory peak %zu, plan %.0f\n", n, (long long)split.allreduce.calls,
                split.allreduce.bytes, want_bytes, (long long)split.allgather.calls, split.allgather.bytes,
                want_gather, split.peak_bytes, planned);
}

// With sequence parallelism each all-reduce above becomes the reduce-scatter and the
// all-gather it is made of, each (n-1)/n of the B*T*C activation per rank (so the pairs
// move exactly the all-reduces' bytes), per micro-batch:
//  * per layer forward: all-gather of the rows before qkv and before fc, reduce-scatter
//    after attn.proj and mlp.proj (full recomputation reruns these 4);
//  * per layer backward: all-gather of d(out) before each row-parallel linear's backward
//    (2), reduce-scatter of each column-parallel linear's input gradient (2), and the
//    all-gather of each column-parallel linear's input again for its weight gradient (2):
//    the block keeps only its rows of the LayerNorm outputs, which is what makes its
//    every activation divide by n (Korthikanti et al. 2022, 4.2.3). These 2 per layer are
//    the traffic SP adds over the all-reduces;
//  * the embedding's output reduce-scattered (and its d(out) all-gathered backward), the
//    head's input all-gathered (and its dx reduce-scattered after the chunks);
//  * the head's softmax statistics as without SP.
// And once, after the micro-batches: one all-reduce per block of its two LayerNorms'
// gradients (4 C floats, adjacent in the flat buffer) and one of lnf's (2 C).
void expect_sequence_parallel_traffic_and_memory(const GPTConfig& cfg, int B, int T, Recompute mode,
                                                 int64_t head_rows, int n, const Outcome& split, bool speak) {
  const int64_t N = int64_t(B) * T, L = cfg.n_layer, C = cfg.n_embd;
  const double share = double(n - 1) / n * double(N) * C * 4;  // one all-gather or reduce-scatter
  const int64_t rerun = mode == Recompute::Full ? 2 * L : 0;
  const int64_t gathers = 2 * (2 * L + 4 * L + rerun + 2), scatters = 2 * (2 * L + 2 * L + rerun + 2);
  const int64_t chunks = head_rows > 0 ? (N + head_rows - 1) / head_rows : 1;
  const double stats = 2.0 * (n - 1) * 3 * double(N) * 4;
  const double norms = 2.0 * (n - 1) / n * double(4 * C * L + 2 * C) * 4;
  EXPECT_EQ(split.allgather.calls, gathers + 2 * chunks);
  EXPECT_DOUBLE_EQ(split.allgather.bytes, double(gathers) * share + stats);
  EXPECT_EQ(split.reduce_scatter.calls, scatters);
  EXPECT_DOUBLE_EQ(split.reduce_scatter.bytes, double(scatters) * share);
  EXPECT_EQ(split.allreduce.calls, L + 1);
  EXPECT_DOUBLE_EQ(split.allreduce.bytes, norms);
  // Against the all-reduces without SP: the same bytes but the 2 L re-gathers per micro-batch.
  const int per_layer = mode == Recompute::Full ? 6 : 4;
  const double tp_bytes = 2.0 * (L * per_layer + 2) * 2.0 * share;
  EXPECT_DOUBLE_EQ(split.allgather.bytes + split.reduce_scatter.bytes - stats, tp_bytes + 2.0 * 2 * L * share);
  // Memory: against the peak, and the activations against the plan without SP: a block's
  // (3 C + 4 fp32 statistics) per token on the residual-stream rows now divide by n, as do
  // the residual stream, dres, the head's input and its gradient, less two [N, C] buffers.
  const double planned = expect_plan_matches_peak(cfg, B, T, mode, head_rows, n, split, true);
  const MemoryPlan with = plan_memory(cfg, B, T, mode, 1, DType::F32, Device::CPU, n, PlanStage{}, true);
  const MemoryPlan without = plan_memory(cfg, B, T, mode, 1, DType::F32, Device::CPU, n, PlanStage{}, false);
  if (mode == Recompute::None) {
    const double held_per_token = double(L) * (3 * C * 4 + 4 * 4) + double((L + 1) * C + C + 2 * C) * 4 + 2 * 4 + C * 4;
    EXPECT_DOUBLE_EQ(double(without.activations) - double(with.activations),
                     held_per_token * (N - N / n) - 2.0 * N * C * 4);
  }
  if (speak)
    std::printf("[traffic] tp %d + sp: %lld all-gathers %.0f bytes, %lld reduce-scatters %.0f bytes, %lld all-reduces "
                "%.0f bytes per rank (formula %.0f + %.0f + %.0f; all-reduces without SP %.0f); activations %zu "
                "bytes (without SP %zu), peak %zu, plan %.0f\n",
                n, (long long)split.allgather.calls, split.allgather.bytes, (long long)split.reduce_scatter.calls,
                split.reduce_scatter.bytes, (long long)split.allreduce.calls, split.allreduce.bytes,
                double(gathers) * share + stats, double(scatters) * share, norms, tp_bytes, with.activations,
                without.activations, split.peak_bytes, planned);
}

void expect_tp_equals_one_process(const GPTConfig& cfg, int B, int T, Recompute mode = Recompute::None,
                                  int64_t head_rows = 0, bool sp = false) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
  std::vector<int> all(size_t(comm->world_size()));
  for (int r = 0; r < comm->world_size(); ++r) all[size_t(r)] = r;
  Group g = comm->make_group("tp", {all});
  TpRegion tp(*comm, g, sp);
  TensorParallelPlan plan(tp);

  ParamStore whole_store, tp_store;
  const Outcome whole = train(cfg, B, T, nullptr, whole_store, Recompute::None, nullptr, head_rows);
  comm->traffic().reset();
  const Outcome split = train(cfg, B, T, &plan, tp_store, mode, comm.get(), head_rows, [&] {
    if (sp) NormGradSum(tp, tp_store, plan.norm_params()).sum_all();
  });
  const int n = comm->world_size();
  const bool speak = comm->world_rank() == 0;
  if (sp) {
    ASSERT_EQ(int64_t(B) * T % n, 0) << "pick a shape whose B*T splits";
    expect_sequence_parallel_traffic_and_memory(cfg, B, T, mode, head_rows, n, split, speak);
  } else {
    expect_tensor_parallel_traffic_and_memory(cfg, B, T, mode, head_rows, n, split, speak);
  }

  // Parameters per rank: the split tensors divide by n, wte by padded vocabulary rows,
  // the replicated ones (wpe, LayerNorms, row-parallel biases) stay whole; counted here
  // from the shapes by hand.
  const int64_t C = cfg.n_embd, L = cfg.n_layer, V = cfg.vocab_size, Vp = padded_rows(V, n);
  const int64_t split_per_layer = 3 * C * C + 3 * C + C * C + 4 * C * C + 4 * C + 4 * C * C;
  const int64_t replicated = int64_t(cfg.block_size) * C + L * (6 * C) + 2 * C;
  EXPECT_EQ(whole_store.total(), L * split_per_layer + V * C + replicated);
  EXPECT_EQ(tp_store.total(), L * split_per_layer / n + Vp / n * C + replicated);

  const int64_t N = int64_t(B) * T;
  EXPECT_LT(plan_memory(cfg, B, T, mode, 1, DType::F32, Device::CPU, n, PlanStage{}, sp).logits, size_t(N * V * 4));
  // The allocation probe: no tensor of this rank, evaluation included, is as large as
  // B T V fp32 logits (wherever that exceeds the rank's flat parameter buffer, the
  // largest tensor it must have; NoRankAllocatesWholeVocabularyLogits makes sure).
  if (size_t(N * V * 4) > size_t(tp_store.total()) * 4) {
    EXPECT_LT(split.largest_bytes, size_t(N * V * 4)) << "a rank allocated a tensor of " << split.largest_bytes << " bytes";
  }

  double worst = 0;
  for (size_t m = 0; m < whole.losses.size(); ++m) {
    EXPECT_NEAR(split.losses[m], whole.losses[m], 1e-5 * std::fabs(whole.losses[m])) << "micro-batch " << m;
    worst = std::max(worst, std::fabs(double(split.losses[m]) - whole.losses[m]) / std::fabs(whole.losses[m]));
  }
  EXPECT_NEAR(split.eval_loss, whole.eval_loss, 1e-5 * std::fabs(whole.eval_loss));
  EXPECT_LE(relative_diff(split.last_logits, whole.last_logits), 1e-5) << "logits for sampling";
  ASSERT_EQ(tp_store.size(), whole_store.size());
  int sharded = 0;
  double worst_grad = 0;
  for (int i = 0; i < tp_store.size(); ++i) {
    const Param& p = tp_store.at(i);
    const Param* w = whole_store.find(p.name);
    ASSERT_NE(w, nullptr) << p.name;
    ASSERT_EQ(p.global_shape, w->global_shape) << p.name;
    if (p.shard.sharded()) ++sharded;
    // slice_of leaves padding elements zero: no gradient may reach them.
    const double rel = relative_diff(split.grads[size_t(i)], slice_of(whole.grads[size_t(i)], p));
    EXPECT_LE(rel, 1e-5) << "gradient of " << p.name << " (" << p.shard.describe() << ")";
    worst_grad = std::max(worst_grad, rel);
  }
  // Every block's four weights and two column-parallel biases are split, and wte.
  EXPECT_EQ(sharded, cfg.n_layer * 6 + 1);
  const Param* wte = tp_store.find("wte");
  ASSERT_NE(wte, nullptr);
  EXPECT_EQ(wte->shape, (Shape{Vp / n, C}));
  // The padding rows hold zeros (and got none of the reference's values).
  const std::vector<float> wte_value = to_host_f32(wte->value);
  const int64_t first_padding = std::max<int64_t>(0, std::min<int64_t>(Vp / n, V - g.rank * (Vp / n)));
  for (int64_t k = first_padding * C; k < int64_t(wte_value.size()); ++k)
    ASSERT_EQ(wte_value[size_t(k)], 0.f) << "padding element " << k;
  if (comm->world_rank() == 0)
    std::printf("[equality] tp %d V %lld (Vp %lld): max relative difference, losses %.2e, gradients %.2e, "
                "eval loss %.2e\n", n, (long long)V, (long long)Vp, worst, worst_grad,
                std::fabs(double(split.eval_loss) - whole.eval_loss) / std::fabs(whole.eval_loss));
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

// V = 517: at tp 2 Vp = 640 and rank 1 holds 197 real rows of 320; at tp 4 Vp = 768 and
// rank 3 holds padding only. Odd head size 9. The head in chunks of 7 rows (the last of
// the 30 rows short).
TEST(TensorParallel, VocabularyPaddedAndChunkedHeadEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 4, cfg.n_embd = 36, cfg.vocab_size = 517, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 2, 15, Recompute::None, 7);
}

// Sequence parallelism: B*T = 32 rows, 16 or 8 per rank.
TEST(TensorParallel, SequenceParallelEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 32, cfg.vocab_size = 101, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 2, 16, Recompute::None, 0, true);
}

// Odd head size 15 and an odd T (19): B*T = 76 splits at tp 2 and 4, so a rank's rows
// start mid-sequence.
TEST(TensorParallel, SequenceParallelAwkwardShapeEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 60, cfg.vocab_size = 509, cfg.block_size = 23;
  expect_tp_equals_one_process(cfg, 4, 19, Recompute::None, 0, true);
}

// Recomputation reruns the sharded forward, collectives included (full), or the norms
// on the rank's rows and GELU (selective).
TEST(TensorParallel, SequenceParallelRecomputationEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 32, cfg.vocab_size = 101, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 2, 16, Recompute::Full, 0, true);
  expect_tp_equals_one_process(cfg, 2, 16, Recompute::Selective, 0, true);
}

// Padded vocabulary and the head in chunks of 7 of the 60 gathered rows.
TEST(TensorParallel, SequenceParallelChunkedHeadEqualsOneProcess) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 4, cfg.n_embd = 36, cfg.vocab_size = 517, cfg.block_size = 16;
  expect_tp_equals_one_process(cfg, 4, 15, Recompute::None, 7, true);
}

// The allocation probe proves itself: the one-process model does make [B, T, V] logits
// (its head's chunk, and the sampling forward's output), the vocabulary-parallel one
// never does. A vocabulary large against the model so that B T V exceeds every other
// tensor, the flat parameter buffers included.
TEST(TensorParallel, NoRankAllocatesWholeVocabularyLogits) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 4, cfg.n_embd = 32, cfg.vocab_size = 4093, cfg.block_size = 16;
  const int B = 4, T = 16;
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
  std::vector<int> all(size_t(comm->world_size()));
  for (int r = 0; r < comm->world_size(); ++r) all[size_t(r)] = r;
  Group g = comm->make_group("tp", {all});
  TpRegion tp(*comm, g);
  TensorParallelPlan plan(tp);
  ParamStore whole_store, tp_store;
  const Outcome whole = train(cfg, B, T, nullptr, whole_store);
  const Outcome split = train(cfg, B, T, &plan, tp_store, Recompute::None, comm.get());
  const size_t logits_bytes = size_t(B) * T * cfg.vocab_size * 4;
  ASSERT_GT(logits_bytes, size_t(whole_store.total()) * 4);
  EXPECT_GE(whole.largest_bytes, logits_bytes);
  EXPECT_LT(split.largest_bytes, logits_bytes);
  EXPECT_NEAR(split.losses[0], whole.losses[0], 1e-5 * std::fabs(whole.losses[0]));
  if (comm->world_rank() == 0)
    std::printf("[probe] tp %d: largest allocation %zu bytes per rank, one process %zu, [B,T,V] %zu\n",
                comm->world_size(), split.largest_bytes, whole.largest_bytes, logits_bytes);
}

// The sampler on a vocabulary-parallel model: each step gathers the last position's
// row from the slices (GPT::vocabulary_logits) and draws the one process's tokens.
TEST(TensorParallel, SamplerDrawsTheOneProcessTokens) {
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 4, cfg.n_embd = 36, cfg.vocab_size = 517, cfg.block_size = 16;
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
  std::vector<int> all(size_t(comm->world_size()));
  for (int r = 0; r < comm->world_size(); ++r) all[size_t(r)] = r;
  Group g = comm->make_group("tp", {all});
  TpRegion tp(*comm, g);
  TensorParallelPlan plan(tp);
  auto draw = [&](const LinearFactory* linears) {
    ParamStore store;
    GPT model(cfg, store, Recompute::None, StageSpec{}, linears);
    store.materialize(Device::CPU);
    store.init(kSeed);
    Rng rng(5);  // the same stream on every rank and in both models
    return generate(model, {1, 500, 42}, SampleConfig{12, 1.0f, 20, 10, 0}, rng, nullptr);
  };
  const std::vector<int32_t> whole = draw(nullptr), split = draw(&plan);
  EXPECT_EQ(split, whole);
  EXPECT_EQ(whole.size(), 15u);
  // Under sequence parallelism the growing prompt's lengths that split over the ranks
  // run sharded, the others on whole rows; both draw the same tokens.
  TpRegion sp_region(*comm, g, true);
  TensorParallelPlan sp_plan(sp_region);
  EXPECT_EQ(draw(&sp_plan), whole);
}

}  // namespace
}  // namespace gpt::parallel
