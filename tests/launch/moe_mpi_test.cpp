// A mixture-of-experts GPT-2 under data and expert parallelism (with and without ZeRO-1),
// through pretrain under mpirun: the routing groups are one sequence each, whatever rank
// or micro-batch holds it, so every layout drops the same assignments and gives the
// one-process run's losses, auxiliary losses, expert loads, grad norms and parameters.
// A checkpoint written with the experts split over 2 ranks resumes with them split over
// 4, or whole in one process.
#include <gtest/gtest.h>

#include <cstdio>

#include "moe_layouts.h"

using namespace gpt::test;

namespace {

std::string layout(int dp, bool zero1, int ep = 1) {
  return moe_args(dp) + " --parallel.zero1 " + (zero1 ? "true" : "false") + " --parallel.ep " + std::to_string(ep);
}

}  // namespace

// Expert parallelism: each rank holds E / ep experts, tokens travel to them by
// all-to-all, expert gradients are reduced over the ranks holding the same experts
// (dp / ep of them) and ZeRO-1 shards each region over its own group.
TEST(MoeMpi, ExpertParallelLayoutsMatchOneProcess) {
  const MoeReference ref = moe_one_process("moe_ep_ref");
  ASSERT_EQ(ref.losses.size(), 10u);
  struct Layout {
    int np, dp, ep;
    bool zero1;
    const char* extra;  // tensor or pipeline parallelism beside
    const char* name;
  };
  // Under TP each TP rank runs its MoE layers whole, exchanging rows within its own EP
  // group (the dp ranks of its TP coordinate); under PP each stage's MoE layers do.
  // The end-of-run sample's forwards are collective over the EP group too: every rank draws it.
  for (Layout l : {Layout{2, 2, 2, false, " --sample.tokens 4", "ep 2"}, Layout{2, 2, 2, true, "", "ep 2, ZeRO-1"},
                   Layout{4, 4, 4, false, "", "ep 4 (dp 4)"}, Layout{4, 4, 2, true, "", "ep 2 x dp 4, ZeRO-1"},
                   Layout{4, 2, 2, false, " --parallel.tp 2", "ep 2 x tp 2"},
                   Layout{4, 2, 2, true, " --parallel.pp 2", "ep 2 x pp 2 (1f1b), ZeRO-1"}}) {
    const std::string d = fresh_dir(std::string("moe_ep") + std::to_string(l.ep) + "_np" + std::to_string(l.np) +
                                    "_dp" + std::to_string(l.dp) + (l.zero1 ? "z" : ""));
    const RunResult r = run_ranks(l.np, layout(l.dp, l.zero1, l.ep) + l.extra + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_moe_run_matches(d, ref, l.name);
  }
}

// Experts are stored by global index: a checkpoint written at ep 2 (dp 4, ZeRO-1) resumes
// at ep 4 (dp 4) and in one process (ep 1), each continuing the uninterrupted run.
TEST(MoeMpi, CheckpointResumesAtOtherExpertParallelism) {
  const std::string saved = fresh_dir("moe_ep_saved");
  RunResult r = run_ranks(4, layout(4, true, 2) + " --run.checkpoint_every 5 --run.dir " + saved);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(saved);
  ASSERT_EQ(want.size(), 10u);
  const std::vector<std::string> want_after(want.begin() + 5, want.end());
  const std::string from = " --run.resume_from " + saved + "/ckpt_00000005";
  for (int ep : {4, 1}) {
    SCOPED_TRACE("resumed at ep " + std::to_string(ep));
    const std::string d = fresh_dir("moe_ep_resumed" + std::to_string(ep));
    r = ep == 1 ? run_pretrain(layout(1, false) + from + " --run.dir " + d)
                : run_ranks(4, layout(4, false, ep) + from + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d);
    ASSERT_EQ(got.size(), 5u) << "steps 6 to 10";
    const double diff = max_relative_difference(got, want_after);
    std::printf("  saved at ep 2 x dp 4, resumed at ep %d: steps 6-10 loss max rel diff %.2e, final parameters %.2e\n",
                ep, diff, parameter_distance(d, saved));
    EXPECT_LE(diff, 1e-5);
    EXPECT_LE(parameter_distance(d, saved), 1e-5);
  }
}

TEST(MoeMpi, DataParallelLayoutsMatchOneProcess) {
  const MoeReference ref = moe_one_process("moe_ref");
  ASSERT_EQ(ref.losses.size(), 10u);
  long long dropped = 0;
  for (const auto& step : ref.loads)
    for (const auto& l : step) dropped += l.dropped;
  EXPECT_GT(dropped, 0) << "the capacity factor should drop some assignments, or drops go untested";
  for (bool zero1 : {false, true}) {
    const std::string d = fresh_dir(zero1 ? "moe_dp2z" : "moe_dp2");
    const RunResult r = run_ranks(2, layout(2, zero1) + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_moe_run_matches(d, ref, zero1 ? "dp 2, ZeRO-1" : "dp 2");
  }
}
