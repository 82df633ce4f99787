// pretrain under mpirun, end to end: data-parallel layouts reproduce the single-process
// losses, a ZeRO-1 checkpoint resumes under another DP size, and a rank that dies
// mid-step stops the whole job with a message naming it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "final_params.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::RunResult;
using gpt::test::fresh_dir;
using gpt::test::max_relative_difference;
using gpt::test::parameter_distance;
using gpt::test::run_pretrain;
using gpt::test::run_ranks;
using gpt::test::train_losses;

namespace {

const std::string kModel =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02";
constexpr int kGlobalMicroBatches = 4;  // dp * grad_accum: the same global batch everywhere

std::string layout(int dp, bool zero1) {
  return kModel + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) +
         " --parallel.zero1 " + (zero1 ? "true" : "false");
}

void expect_losses_close(const std::vector<std::string>& got, const std::vector<std::string>& want,
                         size_t offset = 0) {
  ASSERT_EQ(got.size() + offset, want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    double a = std::stod(got[i]), b = std::stod(want[i + offset]);
    EXPECT_LE(std::abs(a - b) / std::abs(b), 1e-5) << "step " << i + offset + 1 << ": " << a << " vs " << b;
  }
}

}  // namespace

TEST(PretrainMpi, DataParallelLayoutsMatchOneProcess) {
  std::string ref = fresh_dir("ref");
  ASSERT_EQ(run_pretrain(layout(1, false) + " --train.steps 10 --run.save_final false --run.dir " + ref).exit_code, 0);
  auto want = train_losses(ref);
  for (int dp : {2, 4})
    for (bool zero1 : {false, true}) {
      std::string d = fresh_dir("dp" + std::to_string(dp) + (zero1 ? "z" : ""));
      RunResult r = run_ranks(dp, layout(dp, zero1) + " --train.steps 10 --run.save_final false --run.dir " + d);
      ASSERT_EQ(r.exit_code, 0) << r.output;
      SCOPED_TRACE("dp=" + std::to_string(dp) + " zero1=" + std::to_string(zero1));
      expect_losses_close(train_losses(d), want);
    }
}

// Tensor parallelism through pretrain: the same global batch split over tp x dp ranks
// gives the one-process losses at each of 10 steps, its gradient norms within its own
// floating-point noise, and its final parameters (gathered from each run's checkpoint).
TEST(PretrainMpi, TensorParallelLayoutsMatchOneProcess) {
  // Four heads so that tp = 4 splits them; the second shape has an odd head size
  // (60 / 4 = 15). The vocabulary (101) no tp divides: the vocabulary-parallel
  // embedding and head pad it to 128 rows at tp 2 and 256 at tp 4, where ranks 2 and 3
  // hold padding only. Validation (forward with targets, no gradients) at steps 5 and 10.
  for (const char* shape : {"--model.n_embd 32", "--model.n_embd 60"}) {
    auto args = [&](int dp, bool zero1) {
      std::string a = layout(dp, zero1) + " " + shape;
      a.replace(a.find("--model.n_head 2"), 16, "--model.n_head 4");
      a.replace(a.find("--model.n_embd 32"), 17, "");
      return a + " --train.steps 10 --eval.every 5 --eval.steps 2";
    };
    std::string ref = fresh_dir("tp_ref");
    ASSERT_EQ(run_pretrain(args(1, false) + " --run.dir " + ref).exit_code, 0);
    const auto want = train_losses(ref), want_norms = gpt::test::train_field(ref, "grad_norm");
    const auto want_val = gpt::test::metrics_field(ref, "val", "val_loss");
    ASSERT_EQ(want_val.size(), 2u);
    // The one process's own floating-point noise: the same global batch as 2 micro-batches
    // of 4 sequences instead of 4 of 2 sums every gradient in another order. (Another
    // thread count changes nothing: the CPU kernels' reductions do not depend on it.)
    std::string regrouped = args(1, false);
    regrouped.replace(regrouped.find("--train.micro_batch 2"), 21, "--train.micro_batch 4");
    regrouped.replace(regrouped.find("--train.grad_accum 4"), 20, "--train.grad_accum 2");
    const std::string noise = fresh_dir("tp_noise");
    ASSERT_EQ(run_pretrain(regrouped + " --run.dir " + noise).exit_code, 0);
    const double noise_norm = max_relative_difference(gpt::test::train_field(noise, "grad_norm"), want_norms);
    std::printf("[noise] %s one process, 2 x 4 instead of 4 x 2 sequences: loss %.3g, grad norm %.3g, parameters %.3g\n",
                shape, max_relative_difference(train_losses(noise), want), noise_norm, parameter_distance(noise, ref));
    struct Layout { int tp, dp; bool zero1; };
    for (Layout l : {Layout{2, 1, false}, Layout{4, 1, false}, Layout{2, 2, false}, Layout{2, 2, true}}) {
      SCOPED_TRACE(std::string(shape) + " tp=" + std::to_string(l.tp) + " dp=" + std::to_string(l.dp) +
                   " zero1=" + std::to_string(l.zero1));
      std::string d = fresh_dir("tp" + std::to_string(l.tp) + "dp" + std::to_string(l.dp) + (l.zero1 ? "z" : ""));
      RunResult r = run_ranks(l.tp * l.dp, args(l.dp, l.zero1) + " --parallel.tp " + std::to_string(l.tp) +
                                               " --run.dir " + d);
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const auto norms = gpt::test::train_field(d, "grad_norm");
      const double norm_diff = max_relative_difference(norms, want_norms), param_diff = parameter_distance(d, ref);
      std::printf("[tp] %s tp %d dp %d zero1 %d: max relative difference to one process: loss %.3g, grad norm %.3g; "
                  "final parameters %.3g\n", shape, l.tp, l.dp, int(l.zero1),
                  max_relative_difference(train_losses(d), want), norm_diff, param_diff);
      expect_losses_close(train_losses(d), want);
      EXPECT_LE(param_diff, 1e-5);
      ASSERT_EQ(norms.size(), want_norms.size());
      // TP sums each row-parallel product and each replicated parameter's gradient in
      // another order than one process does, as regrouping the batch does. Both land a
      // few float ulps (2^-23 = 1.2e-7 relative) from the reference: measured, the
      // regrouping at 1 ulp (1.2e-7) and TP at up to 3 (3.5e-7, n_embd 60 at tp 2). One
      // regrouping under-samples the noise, so the bound is twice it floored at 1e-6
      // (8 ulps); a real bug (a gradient summed twice or missing) moves the norm by
      // percents.
      EXPECT_LE(norm_diff, std::max(2 * noise_norm, 1e-6));
      // Each data-parallel rank validates eval.steps micro-batches of its own slot, so
      // only dp = 1 sees the one process's validation samples.
      if (l.dp == 1) expect_losses_close(gpt::test::metrics_field(d, "val", "val_loss"), want_val);
    }
  }
}

// Sequence parallelism through pretrain: the same two shapes (odd head size 15; V = 101
// padded per rank) at TP2 and TP4 with SP, and DP2 x TP2 with SP and ZeRO-1, against the
// one process: losses and gradient norms at each of 10 steps. B*T = 32 rows split over
// 2 or 4 ranks; the norms' gradients are summed over TP before the DP reduction.
TEST(PretrainMpi, SequenceParallelLayoutsMatchOneProcess) {
  for (const char* shape : {"--model.n_embd 32", "--model.n_embd 60"}) {
    auto args = [&](int dp, bool zero1) {
      std::string a = layout(dp, zero1) + " " + shape;
      a.replace(a.find("--model.n_head 2"), 16, "--model.n_head 4");
      a.replace(a.find("--model.n_embd 32"), 17, "");
      return a + " --train.steps 10 --eval.every 5 --eval.steps 2";
    };
    std::string ref = fresh_dir("sp_ref");
    ASSERT_EQ(run_pretrain(args(1, false) + " --run.dir " + ref).exit_code, 0);
    const auto want = train_losses(ref), want_norms = gpt::test::train_field(ref, "grad_norm");
    const auto want_val = gpt::test::metrics_field(ref, "val", "val_loss");
    struct Layout { int tp, dp; bool zero1; };
    for (Layout l : {Layout{2, 1, false}, Layout{4, 1, false}, Layout{2, 2, true}}) {
      SCOPED_TRACE(std::string(shape) + " tp=" + std::to_string(l.tp) + "+sp dp=" + std::to_string(l.dp) +
                   " zero1=" + std::to_string(l.zero1));
      std::string d = fresh_dir("sp" + std::to_string(l.tp) + "dp" + std::to_string(l.dp) + (l.zero1 ? "z" : ""));
      RunResult r = run_ranks(l.tp * l.dp, args(l.dp, l.zero1) + " --parallel.tp " + std::to_string(l.tp) +
                                               " --parallel.sp true --run.dir " + d);
      ASSERT_EQ(r.exit_code, 0) << r.output;
      EXPECT_NE(r.output.find("sequence parallel"), std::string::npos) << "the memory plan names SP";
      const double param_diff = gpt::test::parameter_distance(d, ref);
      std::printf("[sp] %s tp %d dp %d zero1 %d: max relative difference to one process, loss %.3g, grad norm %.3g, "
                  "final parameters %.3g\n",
                  shape, l.tp, l.dp, int(l.zero1), gpt::test::max_relative_difference(train_losses(d), want),
                  gpt::test::max_relative_difference(gpt::test::train_field(d, "grad_norm"), want_norms), param_diff);
      expect_losses_close(train_losses(d), want);
      expect_losses_close(gpt::test::train_field(d, "grad_norm"), want_norms);
      EXPECT_LE(param_diff, 1e-5);
      if (l.dp == 1) expect_losses_close(gpt::test::metrics_field(d, "val", "val_loss"), want_val);
    }
  }
}

// SP shards over the TP ranks: without them, or with rows that do not split, the run
// stops before it starts, in one line naming the key.
TEST(PretrainMpi, SequenceParallelBadLayoutsFailAtStartUp) {
  RunResult r = run_pretrain(kModel + " --parallel.sp true --train.steps 1 --run.dir " + fresh_dir("sp_no_tp"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("'parallel.sp' = true needs 'parallel.tp' > 1"), std::string::npos) << r.output;
  std::string rows = kModel;  // 2 sequences of 5 positions over 4 ranks
  rows.replace(rows.find("--train.seq_len 16"), 18, "--train.seq_len 5");
  rows.replace(rows.find("--model.n_head 2"), 16, "--model.n_head 4");
  r = run_pretrain(rows + " --parallel.tp 4 --parallel.sp true --train.steps 1 --run.dir " + fresh_dir("sp_rows"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("config key 'parallel.sp': the 10 positions"), std::string::npos) << r.output;
}

TEST(PretrainMpi, TensorParallelRejectsHeadsNotDivisible) {
  RunResult r = run_ranks(4, kModel + " --parallel.tp 4 --train.steps 1 --run.dir " + fresh_dir("tp_bad"));  // 2 heads
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model.n_head = 2 is not divisible by parallel.tp = 4"), std::string::npos) << r.output;
}

// The other bad TP layouts stop at start-up in one line naming the key. (4 x n_embd not
// divisible by tp cannot happen alone: n_embd is a multiple of n_head, which tp divides,
// so the head check above covers the MLP's 4C split too.)
TEST(PretrainMpi, TensorParallelBadLayoutsFailAtStartUp) {
  auto one_line = [](const RunResult& r, const std::string& what) {
    EXPECT_NE(r.exit_code, 0);
    const size_t at = r.output.find(what);
    ASSERT_NE(at, std::string::npos) << r.output;
    const size_t begin = r.output.rfind('\n', at) + 1, end = r.output.find('\n', at);
    std::printf("[bad layout] %s\n", r.output.substr(begin, end - begin).c_str());
  };
  // 3 ranks do not split into TP groups of 2.
  one_line(run_ranks(3, kModel + " --parallel.tp 2 --train.steps 1 --run.dir " + fresh_dir("tp_world")),
           "error: world size 3 is not divisible by parallel.tp x parallel.pp = 2 x 1");
  // A checkpoint of n_embd 32 resumed with n_embd 64, at TP1 and at TP2: the first
  // parameter read names both global shapes.
  const std::string small = fresh_dir("tp_shape32");
  ASSERT_EQ(run_pretrain(kModel + " --train.steps 1 --run.dir " + small).exit_code, 0);
  std::string wide = kModel;
  wide.replace(wide.find("--model.n_embd 32"), 17, "--model.n_embd 64");
  const std::string resume = " --train.steps 2 --run.resume_from " + small + "/ckpt_00000001";
  const std::string shapes = "tensor 'wte' has global shape [101, 32], the config gives [101, 64]";
  one_line(run_pretrain(wide + resume + " --run.dir " + fresh_dir("tp_shape64")), shapes);
  one_line(run_ranks(2, wide + resume + " --parallel.tp 2 --run.dir " + fresh_dir("tp_shape64tp")), shapes);
}

// A model big enough that a copy of a rank's state (1.6 M parameters: 6 MiB of values,
// 1.5 MiB per rank of each moment under DP=4) dwarfs the 2 MiB bucket, so the memory
// check below would catch one.
const std::string kMemModel =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 256 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 2";

std::string mem_layout(int dp, bool zero1) {
  return kMemModel + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) +
         " --parallel.zero1 " + (zero1 ? "true" : "false");
}

TEST(PretrainMpi, Zero1CheckpointResumesUnderOtherLayoutsWithinOneBucketOfMemory) {
  std::string full = fresh_dir("z_full");
  RunResult r = run_ranks(4, mem_layout(4, true) + " --train.steps 10 --run.checkpoint_every 5 --run.dir " + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto want = train_losses(full);
  const std::string ckpt = full + "/ckpt_00000005";
  for (int rank = 0; rank < 4; ++rank) EXPECT_TRUE(fs::exists(ckpt + "/rank_0000" + std::to_string(rank) + ".h5"));
  EXPECT_TRUE(fs::exists(ckpt + "/COMPLETE"));
  // Every rank's peak memory grew by at most one bucket while it wrote.
  auto saves = gpt::test::checkpoint_lines(full);
  ASSERT_EQ(saves.size(), 2u);
  for (const auto& c : saves) {
    ASSERT_EQ(c.rss_growth_bytes.size(), 4u);
    for (size_t rank = 0; rank < 4; ++rank) {
      std::printf("[memory] step %lld rank %zu: peak RSS grew %lld bytes during the save (bucket %lld)\n",
                  (long long)c.step, rank, (long long)c.rss_growth_bytes[rank], (long long)c.bucket_bytes);
      EXPECT_LE(c.rss_growth_bytes[rank], c.bucket_bytes) << "rank " << rank << " at step " << c.step;
    }
  }
  for (int dp : {1, 2, 4}) {
    std::string d = fresh_dir("z_resume" + std::to_string(dp));
    std::string args = mem_layout(dp, false) + " --train.steps 10 --run.resume_from " + ckpt + " --run.dir " + d;
    r = dp == 1 ? run_pretrain(args) : run_ranks(dp, args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    SCOPED_TRACE("resumed at dp=" + std::to_string(dp));
    expect_losses_close(train_losses(d), want, 5);
  }
  // The consolidated single file resumes in one process with the same losses.
  const std::string one = full + "/consolidated.h5";
  r = gpt::test::run_command(std::string(CKPT_BIN) + " consolidate " + ckpt + " " + one);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string d = fresh_dir("z_consolidated");
  r = run_pretrain(mem_layout(1, false) + " --train.steps 10 --run.resume_from " + one + " --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_losses_close(train_losses(d), want, 5);
}

// A checkpoint written at TP2 x DP2 with ZeRO-1 (each TP rank writes its slices, each
// DP rank its share of them) continues the same run at TP1 x DP4, TP4 x DP1 and TP1 x DP1.
TEST(PretrainMpi, TensorParallelCheckpointResumesUnderOtherLayouts) {
  auto args = [](int tp, int dp, bool zero1) {
    std::string a = layout(dp, zero1);
    a.replace(a.find("--model.n_head 2"), 16, "--model.n_head 4");
    return a + " --parallel.tp " + std::to_string(tp) + " --train.steps 10";
  };
  std::string full = fresh_dir("tp_ckpt_full");
  RunResult r = run_ranks(4, args(2, 2, true) + " --run.checkpoint_every 5 --run.dir " + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(full);
  struct Layout { int tp, dp; };
  for (Layout l : {Layout{1, 4}, Layout{4, 1}, Layout{1, 1}}) {
    SCOPED_TRACE("resumed at tp=" + std::to_string(l.tp) + " dp=" + std::to_string(l.dp));
    std::string d = fresh_dir("tp_ckpt_resume" + std::to_string(l.tp) + std::to_string(l.dp));
    std::string a = args(l.tp, l.dp, false) + " --run.save_final false --run.resume_from " + full +
                    "/ckpt_00000005 --run.dir " + d;
    r = l.tp * l.dp == 1 ? run_pretrain(a) : run_ranks(l.tp * l.dp, a);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_losses_close(train_losses(d), want, 5);
  }
}

TEST(PretrainMpi, RankExitingMidStepStopsTheJobAndNamesIt) {
  std::string d = fresh_dir("fault");
  RunResult r = run_ranks(2, layout(2, true) + " --train.steps 10 --run.checkpoint_every 3"
                                 " --debug.exit_step 5 --debug.exit_rank 1 --parallel.timeout_s 20 --run.dir " + d);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the job hung until the test's time limit:\n" << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  // The last checkpoint is intact and resumable.
  ASSERT_TRUE(fs::exists(d + "/ckpt_00000003/COMPLETE"));
  r = run_ranks(2, layout(2, true) + " --train.steps 5 --run.resume true --run.dir " + d);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
}
