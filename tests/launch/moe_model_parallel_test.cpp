// A mixture-of-experts GPT-2 under tensor and pipeline parallelism, through pretrain under
// mpirun, against the one-process run over 10 steps: losses, grad norms, the auxiliary
// losses (moe_aux, moe_z), final parameters, and identical per-expert loads.
//   TP: every TP rank runs each MoE layer whole (router and experts replicated) on the
//       whole rows, so the experts' gradients are whole on every rank and counted once in
//       the grad norm.
//   PP: the stage holding an MoE block adds its auxiliary losses' gradient itself (the
//       step's dloss reaches every stage), and the log sums the stages' losses and loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "final_params.h"
#include "moe_metrics_reader.h"
#include "run_pretrain.h"

using gpt::test::fresh_dir;
using gpt::test::max_relative_difference;
using gpt::test::moe_layer_records;
using gpt::test::parameter_distance;
using gpt::test::RunResult;
using gpt::test::run_pretrain;
using gpt::test::run_ranks;
using gpt::test::train_field;
using gpt::test::train_losses;

namespace {

// The MoeMpi model: 4 layers, blocks 1 and 3 MoE with 4 experts, top-2, capacity factor
// 1.25 (so some assignments are dropped), both auxiliary losses on.
const std::string kMoe =
    " --model.n_layer 4 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02 --train.steps 10"
    " --moe.experts 4 --moe.top_k 2 --moe.every 2 --moe.capacity_factor 1.25"
    " --moe.aux_loss 0.01 --moe.z_loss 1e-3";
constexpr int kGlobalMicroBatches = 4;  // dp * grad_accum: the same global batch everywhere

struct Layout {
  const char* name;
  int tp, pp, dp;
  std::string extra;  // schedule, virtual stages, ZeRO-1
};

std::string args_for(const Layout& l) {
  return kMoe + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / l.dp) + " --parallel.tp " +
         std::to_string(l.tp) + " --parallel.pp " + std::to_string(l.pp) + " " + l.extra;
}

// The one-process run, then each layout against it.
void expect_layouts_match(const std::vector<Layout>& layouts) {
  const std::string ref = fresh_dir("moe_mp_ref");
  RunResult r = run_pretrain(args_for(Layout{"ref", 1, 1, 1, ""}) + " --run.dir " + ref);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(ref), want_norms = train_field(ref, "grad_norm");
  const auto want_aux = train_field(ref, "moe_aux"), want_z = train_field(ref, "moe_z");
  const auto want_loads = moe_layer_records(ref);
  ASSERT_EQ(want.size(), 10u);
  ASSERT_EQ(want_loads.size(), 10u);
  ASSERT_EQ(want_loads[0].size(), 2u);  // blocks 1 and 3
  for (const Layout& l : layouts) {
    SCOPED_TRACE(l.name);
    const std::string d = fresh_dir(std::string("moe_mp_") + l.name);
    r = run_ranks(l.tp * l.pp * l.dp, args_for(l) + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d);
    ASSERT_EQ(got.size(), want.size());
    const double loss_diff = max_relative_difference(got, want);
    const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want_norms);
    const double aux_diff = max_relative_difference(train_field(d, "moe_aux"), want_aux);
    const double z_diff = max_relative_difference(train_field(d, "moe_z"), want_z);
    const double param_diff = parameter_distance(d, ref);
    std::printf("[%s] max rel diff to one process: loss %.2e, grad norm %.2e, moe_aux %.2e, moe_z %.2e, "
                "final parameters %.2e\n",
                l.name, loss_diff, norm_diff, aux_diff, z_diff, param_diff);
    EXPECT_LE(loss_diff, 1e-5);
    EXPECT_LE(norm_diff, 1e-5);
    EXPECT_LE(aux_diff, 1e-5);
    EXPECT_LE(z_diff, 1e-5);
    EXPECT_LE(param_diff, 1e-5);
    // The loads are counts: the same routing gives the one-process figures exactly, every
    // MoE layer listed whichever stage holds it.
    const auto loads = moe_layer_records(d);
    ASSERT_EQ(loads.size(), want_loads.size());
    for (size_t s = 0; s < loads.size(); ++s) {
      ASSERT_EQ(loads[s].size(), want_loads[s].size()) << "step " << s + 1;
      for (size_t k = 0; k < loads[s].size(); ++k) {
        EXPECT_EQ(loads[s][k].layer, want_loads[s][k].layer) << "step " << s + 1;
        EXPECT_EQ(loads[s][k].tokens_per_expert, want_loads[s][k].tokens_per_expert) << "step " << s + 1;
        EXPECT_EQ(loads[s][k].dropped, want_loads[s][k].dropped) << "step " << s + 1;
        EXPECT_EQ(loads[s][k].assignments, want_loads[s][k].assignments) << "step " << s + 1;
      }
    }
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
