// Pipeline parallelism through pretrain under mpirun: every schedule and layout gives
// the one-process run's losses, gradient norms and final parameters; a checkpoint
// written by a pipeline resumes under other layouts; bad layouts stop at start-up.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "final_params.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::fresh_dir;
using gpt::test::max_relative_difference;
using gpt::test::parameter_distance;
using gpt::test::run_pretrain;
using gpt::test::run_ranks;
using gpt::test::RunResult;
using gpt::test::train_field;
using gpt::test::train_losses;

namespace {

// Eight layers: PP=4 with two layers a stage, interleaving with v=2 at PP=2 and PP=4.
const std::string kModel =
    " --model.n_layer 8 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02 --train.steps 10";
constexpr int kGlobalMicroBatches = 8;  // dp * grad_accum

std::string args_for(int dp, bool zero1) {
  return kModel + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) + " --parallel.zero1 " +
         (zero1 ? "true" : "false");
}

}  // namespace

TEST(PipelineMpi, EveryScheduleAndLayoutMatchesOneProcess) {
  const std::string ref = fresh_dir("pp_ref");
  ASSERT_EQ(run_pretrain(args_for(1, false) + " --run.dir " + ref).exit_code, 0);
  const auto want = train_losses(ref), want_norms = train_field(ref, "grad_norm");
  ASSERT_EQ(want.size(), 10u);
  // The one-process run's own floating-point noise: the same global batch as 4
  // micro-batches of 4 sequences instead of 8 of 2 sums every gradient in another
  // order. (Two threads instead of one changes nothing: the CPU kernels' reductions do
  // not depend on the thread count.)
  const std::string noise = fresh_dir("pp_noise");
  std::string regrouped = args_for(2, false);  // grad_accum 4
  regrouped.replace(regrouped.find("--train.micro_batch 2"), 21, "--train.micro_batch 4");
  ASSERT_EQ(run_pretrain(regrouped + " --run.dir " + noise).exit_code, 0);
  const double noise_loss = max_relative_difference(train_losses(noise), want);
  const double noise_norm = max_relative_difference(train_field(noise, "grad_norm"), want_norms);
  std::printf("[noise] one process, 4 x 4 instead of 8 x 2 sequences: loss %.3g, grad norm %.3g, parameters %.3g\n",
              noise_loss, noise_norm, parameter_distance(noise, ref));

  struct Layout {
    int pp, dp;
    const char* schedule;
    int v;
    bool zero1;
  };
  for (Layout l : {Layout{2, 1, "gpipe", 1, false}, Layout{2, 1, "1f1b", 1, false}, Layout{2, 1, "interleaved", 2, false},
                   Layout{2, 1, "zb-h1", 1, false}, Layout{4, 1, "gpipe", 1, false}, Layout{4, 1, "1f1b", 1, false},
                   Layout{4, 1, "interleaved", 2, false}, Layout{4, 1, "zb-h1", 1, false}, Layout{2, 2, "1f1b", 1, true},
                   Layout{2, 2, "zb-h1", 1, true}}) {
    const std::string name = "pp" + std::to_string(l.pp) + "dp" + std::to_string(l.dp) + l.schedule +
                             "v" + std::to_string(l.v) + (l.zero1 ? "z" : "");
    SCOPED_TRACE(name);
    const std::string d = fresh_dir(name);
    RunResult r = run_ranks(l.pp * l.dp, args_for(l.dp, l.zero1) + " --parallel.pp " + std::to_string(l.pp) +
                                             " --parallel.schedule " + l.schedule + " --parallel.virtual_stages " +
                                             std::to_string(l.v) + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d), norms = train_field(d, "grad_norm");
    ASSERT_EQ(got.size(), want.size());
    const double loss_diff = max_relative_difference(got, want), norm_diff = max_relative_difference(norms, want_norms);
    const double param_diff = parameter_distance(d, ref);
    std::printf("[%s] max relative difference to one process: loss %.3g, grad norm %.3g; final parameters %.3g\n",
                name.c_str(), loss_diff, norm_diff, param_diff);
    EXPECT_LE(loss_diff, 1e-5);
    EXPECT_LE(param_diff, 1e-5);
    // The pipeline sums the tied embedding's two gradients in another order, nothing
    // more: its norms stay within twice the one-process run's own noise.
    EXPECT_LE(norm_diff, 2 * noise_norm);
  }
}

// With tensor parallelism inside each stage (PP2 x TP2) and data parallelism around it
// (PP2 x TP2 x DP2, 8 ranks, interleaved, ZeRO-1): the one-process numbers still.
TEST(PipelineMpi, CombinedWithTensorAndDataParallelMatchesOneProcess) {
  const std::string ref = fresh_dir("pptp_ref");
  ASSERT_EQ(run_pretrain(args_for(1, false) + " --run.dir " + ref).exit_code, 0);
  const auto want = train_losses(ref), want_norms = train_field(ref, "grad_norm");
  struct Layout {
    int pp, tp, dp;
    const char* schedule;
    int v;
    bool zero1, sp = false;
  };
  // With sequence parallelism the stages hand each other their [B*T/tp, C] rows; zb-h1's
  // delayed weight gradients gather their rows again.
  for (Layout l : {Layout{2, 2, 1, "1f1b", 1, false}, Layout{2, 2, 2, "interleaved", 2, true},
                   Layout{2, 2, 1, "1f1b", 1, false, true}, Layout{2, 2, 1, "zb-h1", 1, false, true}}) {
    const std::string name = "pp" + std::to_string(l.pp) + "tp" + std::to_string(l.tp) + (l.sp ? "sp" : "") + "dp" +
                             std::to_string(l.dp) + l.schedule;
    SCOPED_TRACE(name);
    const std::string d = fresh_dir(name);
    RunResult r = run_ranks(l.pp * l.tp * l.dp, args_for(l.dp, l.zero1) + " --parallel.pp " + std::to_string(l.pp) +
                                                    " --parallel.tp " + std::to_string(l.tp) + " --parallel.schedule " +
                                                    l.schedule + " --parallel.virtual_stages " + std::to_string(l.v) +
                                                    " --parallel.sp " + (l.sp ? "true" : "false") + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const double loss_diff = max_relative_difference(train_losses(d), want);
    const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want_norms);
    const double param_diff = parameter_distance(d, ref);
    std::printf("[%s] max relative difference to one process: loss %.3g, grad norm %.3g; final parameters %.3g\n",
                name.c_str(), loss_diff, norm_diff, param_diff);
    EXPECT_EQ(train_losses(d).size(), want.size());
    EXPECT_LE(loss_diff, 1e-5);
    EXPECT_LE(norm_diff, 1e-5);
    EXPECT_LE(param_diff, 1e-5);
  }
}

// A checkpoint written by PP2 x DP2 with ZeRO-1 (the first and the last stage both write
// the tied embedding, under its one global name) continues the same run without a
// pipeline, at PP4 and at PP2 x TP2.
TEST(PipelineMpi, CheckpointResumesUnderOtherLayouts) {
  const std::string full = fresh_dir("pp_ckpt_full");
  RunResult r = run_ranks(4, args_for(2, true) + " --parallel.pp 2 --run.checkpoint_every 5 --run.dir " + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(full);
  struct Layout {
    int pp, tp;
  };
  for (Layout l : {Layout{1, 1}, Layout{4, 1}, Layout{2, 2}}) {
    SCOPED_TRACE("resumed at pp=" + std::to_string(l.pp) + " tp=" + std::to_string(l.tp));
    const std::string d = fresh_dir("pp_ckpt_resume" + std::to_string(l.pp) + std::to_string(l.tp));
    const std::string a = args_for(1, false) + " --parallel.pp " + std::to_string(l.pp) + " --parallel.tp " +
                          std::to_string(l.tp) + " --run.save_final false --run.resume_from " + full +
                          "/ckpt_00000005 --run.dir " + d;
    r = l.pp * l.tp == 1 ? run_pretrain(a) : run_ranks(l.pp * l.tp, a);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d);
    ASSERT_EQ(got.size() + 5, want.size());
    EXPECT_LE(max_relative_difference(got, want, 5), 1e-5);
  }
}

// Layouts the layers or the schedule cannot take stop at start-up with one line naming
// the key, before any step.
TEST(PipelineMpi, BadLayoutsFailAtStartNamingTheKey) {
  struct Case {
    std::string args, key;
  };
  const std::vector<Case> cases = {
      {"--parallel.pp 2 --parallel.layers_per_stage 3,3", "parallel.layers_per_stage"},      // sums to 6, not 8
      {"--parallel.pp 2 --parallel.layers_per_stage 2,2,4", "parallel.layers_per_stage"},    // 3 entries, 2 stages
      {"--parallel.pp 2 --parallel.schedule interleaved --parallel.virtual_stages 2 --train.grad_accum 1",
       "train.grad_accum"},                                                                    // m < p
      {"--parallel.pp 2 --parallel.schedule interleaved --parallel.virtual_stages 8", "parallel.virtual_stages"},
      {"--parallel.pp 2 --parallel.schedule 1f1b --parallel.virtual_stages 2", "parallel.virtual_stages"},
      {"--parallel.pp 2 --parallel.schedule zb-h1 --train.recompute selective", "train.recompute"},
      {"--parallel.pp 2 --parallel.schedule pipedream", "parallel.schedule"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    RunResult r = run_ranks(2, args_for(1, false) + " " + c.args + " --run.dir " + fresh_dir("pp_bad"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find(c.key), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step      1/"), std::string::npos) << "trained before failing:\n" << r.output;
  }
}

// A stage that stops mid-schedule (here it hangs, which no process exit reveals) stops
// the job within the communication timeout, and the message names the waiting rank, its
// stage and the receive it waits on; the last checkpoint stays intact and resumes.
TEST(PipelineMpi, StageHangingMidScheduleStopsTheJobNamingRankStageAndReceive) {
  const std::string d = fresh_dir("pp_fault");
  RunResult r = run_ranks(2, args_for(1, false) + " --parallel.pp 2 --run.checkpoint_every 3 --debug.exit_step 5"
                                                  " --debug.exit_rank 1 --debug.hang true --parallel.timeout_s 5"
                                                  " --run.dir " + d);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the job hung until the test's time limit:\n" << r.output;
  EXPECT_NE(r.output.find("gpt comm timeout: rank 0 (pipeline stage 0 in 'pp'): recv from pipeline stage 1"),
            std::string::npos)
      << r.output;
  ASSERT_TRUE(fs::exists(d + "/ckpt_00000003/COMPLETE"));
  r = run_ranks(2, args_for(1, false) + " --parallel.pp 2 --run.resume true --run.dir " + d);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
}
