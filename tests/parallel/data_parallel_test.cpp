// Data parallelism and ZeRO-1 under mpirun (-np 2 and -np 4, same binary):
//  (a) layout equality with the single-process run on the same global batch,
//  (b) per-rank traffic of one step equals the analytic volume,
//  (c) ZeRO-1 optimizer state per rank is 1/dp of the replicated one,
//  (d) a ZeRO-1 checkpoint written at dp = n resumes at dp = n/2 and dp = 1.
// Tolerances: losses |a-b|/|b| <= 1e-5 per step; parameters ||a-b||_2/||b||_2 <= 1e-5
// over the whole flat parameter vector.
#include <gtest/gtest.h>

#include <filesystem>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

#include "core/checkpoint/sharded_checkpoint.h"
#include "tests/parallel/dp_test_support.h"

namespace gpt::parallel {
namespace {

using testing::relative_l2;
using testing::TinyTrainer;

constexpr int kSteps = 10;
constexpr int kAccum = 2;          // micro-batches per rank per step in the DP runs
constexpr double kBucketMb = 0.05;  // ~13k floats: several buckets for the tiny model
constexpr double kTol = 1e-5;

struct Curve {
  std::vector<float> losses;
  std::vector<float> params;
};

class DataParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
    n = comm->world_size();
    r = comm->world_rank();
    world = comm->world_group();
    std::vector<std::vector<int>> singles;
    for (int i = 0; i < n; ++i) singles.push_back({i});
    solo = comm->make_group("solo", singles);  // dp = 1: the single-process reference
  }

  // Single process, dp = 1, n*kAccum micro-batches: the same global batch per step.
  const Curve& reference() {
    static Curve ref;  // computed once per process, shared by the tests below
    if (ref.losses.empty()) {
      TinyTrainer t(*comm, solo, n * kAccum, DPConfig{});
      for (int s = 0; s < kSteps; ++s) ref.losses.push_back(t.step(s));
      ref.params = t.params();
    }
    return ref;
  }

  void expect_same_curve(const std::vector<float>& got, const std::vector<float>& want,
                         size_t first, const char* what) {
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_LE(std::fabs(got[i] - want[first + i]) / std::fabs(want[first + i]), kTol)
          << what << ": step " << first + i << " loss " << got[i] << " vs " << want[first + i];
  }

  std::unique_ptr<Communicator> comm;
  Group world, solo;
  int n = 0, r = 0;
};

TEST_F(DataParallelTest, LossesAndParamsEqualSingleProcess) {
  const Curve& ref = reference();
  for (DPConfig cfg : {DPConfig{false, true, kBucketMb}, DPConfig{true, true, kBucketMb},
                       DPConfig{false, false, kBucketMb}}) {
    SCOPED_TRACE(std::string("zero1 ") + (cfg.zero1 ? "on" : "off") + ", overlap " +
                 (cfg.overlap ? "on" : "off") + ", dp " + std::to_string(n));
    TinyTrainer t(*comm, world, kAccum, cfg);
    ASSERT_GT(t.dp->buckets().size(), 2u);
    std::vector<float> losses;
    for (int s = 0; s < kSteps; ++s) losses.push_back(t.step(s));
    expect_same_curve(losses, ref.losses, 0, "dp run");
    const double param_err = relative_l2(t.params(), ref.params);
    EXPECT_LE(param_err, kTol);
    double loss_err = 0;
    for (int s = 0; s < kSteps; ++s)
      loss_err = std::max(loss_err, double(std::fabs(losses[size_t(s)] - ref.losses[size_t(s)]) /
                                           std::fabs(ref.losses[size_t(s)])));
    if (r == 0)
      std::printf("[equality] dp %d zero1 %d overlap %d: max loss rel err %.3g, params rel L2 %.3g\n",
                  n, int(cfg.zero1), int(cfg.overlap), loss_err, param_err);
    EXPECT_LT(ref.losses.back(), ref.losses.front());  // it trains at all
  }
}

TEST_F(DataParallelTest, OneStepTrafficEqualsAnalyticVolume) {
  for (bool zero1 : {false, true}) {
    TinyTrainer t(*comm, world, kAccum, DPConfig{zero1, true, kBucketMb});
    const double P = double(t.store.total());  // parameters
    const double grad_bytes = 4.0 * P;         // F32 gradients
    comm->traffic().reset();
    t.step(0);
    const TrafficCounter& tc = comm->traffic();
    const double ring = 2.0 * (n - 1) / n;  // ring all-reduce factor
    if (!zero1) {
      // Every gradient all-reduced once (bucketed) + the 1-float loss average.
      EXPECT_NEAR(tc.get("world", "allreduce").bytes, ring * (grad_bytes + 4.0), 1e-6);
      EXPECT_EQ(tc.get("world", "allreduce").calls, int64_t(t.dp->buckets().size()) + 1);
      EXPECT_EQ(tc.get("world", "reduce_scatter").calls, 0);
    } else {
      // Reduce-scatter and all-gather each move the buffer minus this rank's shard
      // ((n-1)/n of it for equal shards); all-reduce carries the norm pair and the loss.
      const double own = 4.0 * double(t.dp->shard().size());
      EXPECT_NEAR(tc.get("world", "reduce_scatter").bytes, grad_bytes - own, 1e-6);
      EXPECT_NEAR(tc.get("world", "allgather").bytes, grad_bytes - own, 1e-6);
      EXPECT_NEAR(tc.get("world", "allreduce").bytes, ring * (8.0 + 4.0), 1e-9);
      EXPECT_NEAR(tc.get("world", "reduce_scatter").bytes + tc.get("world", "allgather").bytes,
                  ring * grad_bytes, 2.0 * 4.0 * n);  // = all-reduce volume up to shard rounding
    }
    if (r == 0)
      std::printf("[traffic] dp %d zero1 %d: P %.0f, per-rank bytes %s", n, int(zero1), P,
                  tc.report().c_str());
  }
}

TEST_F(DataParallelTest, Zero1OptimizerStateIsOneOverDp) {
  TinyTrainer full(*comm, world, kAccum, DPConfig{false, true, kBucketMb});
  TinyTrainer sharded(*comm, world, kAccum, DPConfig{true, true, kBucketMb});
  const int64_t P = full.store.total();
  const size_t full_bytes = full.dp->optimizer_state_bytes();
  const size_t mine = sharded.dp->optimizer_state_bytes();
  EXPECT_EQ(full_bytes, size_t(8 * P));                      // m and v, F32
  EXPECT_LE(mine, size_t(8 * ((P + n - 1) / n)));            // 1/n, rounded up
  EXPECT_GE(mine, size_t(8 * (P / n - n)));                  // and not less
  // The shards tile the buffer: summed over ranks, exactly the replicated state.
  Tensor sum = empty({1}, DType::I32);
  sum.i32()[0] = int32_t(mine);
  comm->allreduce(sum, world).wait();
  EXPECT_EQ(size_t(sum.i32()[0]), full_bytes);
  if (r == 0)
    std::printf("[memory] dp %d: replicated %zu bytes, ZeRO-1 %zu bytes per rank, ratio %.4f\n%s\n",
                n, full_bytes, mine, double(mine) / double(full_bytes), sharded.dp->describe().c_str());
}

TEST_F(DataParallelTest, Zero1CheckpointResumesOnSmallerLayouts) {
  const Curve& ref = reference();
  constexpr int kSaveAt = 5;
  // A path every rank agrees on: rank 0's pid, broadcast.
  Tensor pid = empty({1}, DType::I32);
  pid.i32()[0] = int32_t(getpid());
  comm->broadcast(pid, 0, world).wait();
  const std::string path = "/tmp/gpt_dp_resume_" + std::to_string(pid.i32()[0]);
  {
    TinyTrainer t(*comm, world, kAccum, DPConfig{true, true, kBucketMb});
    for (int s = 0; s < kSaveAt; ++s) t.step(s);
    // Every rank writes its own range; nothing is gathered. Rank 0 marks it complete.
    // A dense model: one region, the whole buffer over dp.
    ASSERT_EQ(t.dp->checkpoint_ranges().size(), 1u);
    const CheckpointRange own = t.dp->checkpoint_ranges()[0];
    write_rank_file(path + "/" + rank_file_name(r),
                    owned_state(t.store, own.range.begin, own.range.end, own.adam, CheckpointScalars{kSaveAt, own.adam->t(), {}, ""}, r, n),
                    SaveOptions{});
    comm->barrier(world).wait();
    if (r == 0) write_marker(path, CheckpointMarker{kCheckpointFormatVersion, kSaveAt, CheckpointLayout{n, n, true, 1, 1}, n});
    comm->barrier(world).wait();
  }
  std::vector<std::vector<int>> halves(2);
  for (int i = 0; i < n; ++i) halves[size_t(i * 2 / n)].push_back(i);
  Group half = comm->make_group("half", halves);
  struct Layout { const Group* g; int accum; bool zero1; };
  for (Layout lay : {Layout{&half, kAccum * 2, true}, Layout{&solo, kAccum * n, false}}) {
    SCOPED_TRACE("resume at dp " + std::to_string(lay.g->size()));
    TinyTrainer t(*comm, *lay.g, lay.accum, DPConfig{lay.zero1, true, kBucketMb});
    CheckpointSource src(path);
    load_params(src, t.store);
    load_optimizer(src, t.store, *t.dp->optimizers().at(0));
    std::vector<float> losses;
    for (int s = kSaveAt; s < kSteps; ++s) losses.push_back(t.step(s));
    expect_same_curve(losses, ref.losses, kSaveAt, "resumed run");
    EXPECT_LE(relative_l2(t.params(), ref.params), kTol);
  }
  comm->barrier(world).wait();
  if (r == 0) std::filesystem::remove_all(path);
}

}  // namespace
}  // namespace gpt::parallel
