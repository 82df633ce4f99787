// A mixture-of-experts GPT-2 under tensor and pipeline parallelism, through pretrain under
// mpirun, against the one-process run over 10 steps: losses, grad norms, the auxiliary
// losses (moe_aux, moe_z), final parameters, and identical per-expert loads.
//   TP: every TP rank runs each MoE layer whole (router and experts replicated) on the
//       whole rows, so the experts' gradients are whole on every rank and counted once in
//       the grad norm.
//   PP: the stage holding an MoE block adds its auxiliary losses' gradient itself (the
//       step's dloss reaches every stage), and the log sums the stages' losses and loads.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "moe_layouts.h"

using namespace gpt::test;

namespace {

struct Layout {
  const char* name;
  int tp, pp, dp;
  std::string extra;  // schedule, virtual stages, ZeRO-1
};

std::string args_for(const Layout& l) {
  return moe_args(l.dp) + " --parallel.tp " +
         std::to_string(l.tp) + " --parallel.pp " + std::to_string(l.pp) + " " + l.extra;
}

// The one-process run, then each layout against it.
void expect_layouts_match(const std::vector<Layout>& layouts) {
  const MoeReference ref = moe_one_process("moe_mp_ref");
  ASSERT_EQ(ref.losses.size(), 10u);
  ASSERT_EQ(ref.loads.size(), 10u);
  ASSERT_EQ(ref.loads[0].size(), 2u);  // blocks 1 and 3
  for (const Layout& l : layouts) {
    const std::string d = fresh_dir(std::string("moe_mp_") + l.name);
    const RunResult r = run_ranks(l.tp * l.pp * l.dp, args_for(l) + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_moe_run_matches(d, ref, l.name);
  }
}

}  // namespace

TEST(MoeModelParallelMpi, TensorParallelMatchesOneProcess) {
  expect_layouts_match({Layout{"tp2", 2, 1, 1, ""}});
}

// 1F1B puts one MoE block on each stage; interleaved (4 chunks of one layer) puts both on
// stage 1, so stage 0 (rank 0, which writes the log) holds none; zb-h1 splits backward.
TEST(MoeModelParallelMpi, PipelineSchedulesMatchOneProcess) {
  expect_layouts_match({Layout{"pp2_1f1b", 1, 2, 1, "--parallel.schedule 1f1b"},
                        Layout{"pp2_interleaved", 1, 2, 1, "--parallel.schedule interleaved --parallel.virtual_stages 2"},
                        Layout{"pp2_zbh1", 1, 2, 1, "--parallel.schedule zb-h1"}});
}

TEST(MoeModelParallelMpi, TensorTimesPipelineMatchesOneProcess) {
  expect_layouts_match({Layout{"tp2_pp2", 2, 2, 1, "--parallel.schedule 1f1b"}});
}

TEST(MoeModelParallelMpi, PipelineTimesDataParallelMatchesOneProcess) {
  expect_layouts_match({Layout{"pp2_dp2_zero1", 1, 2, 2, "--parallel.schedule 1f1b --parallel.zero1 true"}});
}
