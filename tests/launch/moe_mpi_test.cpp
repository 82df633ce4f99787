// A mixture-of-experts GPT-2 under data parallelism (with and without ZeRO-1), through
// pretrain under mpirun: the routing groups are one sequence each, whatever rank or
// micro-batch holds it, so every layout drops the same assignments and gives the
// one-process run's losses, auxiliary losses, expert loads, grad norms and parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

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

// 4 layers, blocks 1 and 3 MoE with 4 experts, top-2, capacity factor 1.25 (so some
// assignments are dropped), both auxiliary losses on.
const std::string kMoe =
    " --model.n_layer 4 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02 --train.steps 10"
    " --moe.experts 4 --moe.top_k 2 --moe.every 2 --moe.capacity_factor 1.25"
    " --moe.aux_loss 0.01 --moe.z_loss 1e-3";
constexpr int kGlobalMicroBatches = 4;  // dp * grad_accum: the same global batch everywhere

std::string layout(int dp, bool zero1) {
  return kMoe + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) + " --parallel.zero1 " +
         (zero1 ? "true" : "false");
}

}  // namespace

TEST(MoeMpi, DataParallelLayoutsMatchOneProcess) {
  const std::string ref = fresh_dir("moe_ref");
  RunResult r = run_pretrain(layout(1, false) + " --run.dir " + ref);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(ref), want_norms = train_field(ref, "grad_norm");
  const auto want_aux = train_field(ref, "moe_aux"), want_z = train_field(ref, "moe_z");
  const auto want_loads = moe_layer_records(ref);
  ASSERT_EQ(want.size(), 10u);
  long long dropped = 0;
  for (const auto& step : want_loads)
    for (const auto& l : step) dropped += l.dropped;
  EXPECT_GT(dropped, 0) << "the capacity factor should drop some assignments, or drops go untested";
  for (bool zero1 : {false, true}) {
    SCOPED_TRACE(zero1 ? "dp 2, ZeRO-1" : "dp 2");
    const std::string d = fresh_dir(zero1 ? "moe_dp2z" : "moe_dp2");
    r = run_ranks(2, layout(2, zero1) + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d);
    ASSERT_EQ(got.size(), want.size());
    const double loss_diff = max_relative_difference(got, want);
    const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want_norms);
    const double aux_diff = std::max(max_relative_difference(train_field(d, "moe_aux"), want_aux),
                                     max_relative_difference(train_field(d, "moe_z"), want_z));
    const double param_diff = parameter_distance(d, ref);
    std::printf("  dp 2%s, max rel diff: loss %.2e, grad norm %.2e, aux losses %.2e, final parameters %.2e\n",
                zero1 ? " ZeRO-1" : "", loss_diff, norm_diff, aux_diff, param_diff);
    EXPECT_LE(loss_diff, 1e-5);
    EXPECT_LE(norm_diff, 1e-5);
    EXPECT_LE(aux_diff, 1e-5);
    EXPECT_LE(param_diff, 1e-5);
    // The loads are counts: summed over the ranks they equal one process's exactly.
    const auto loads = moe_layer_records(d);
    ASSERT_EQ(loads.size(), want_loads.size());
    for (size_t s = 0; s < loads.size(); ++s) {
      ASSERT_EQ(loads[s].size(), want_loads[s].size()) << "step " << s + 1;
      for (size_t l = 0; l < loads[s].size(); ++l) {
        EXPECT_EQ(loads[s][l].tokens_per_expert, want_loads[s][l].tokens_per_expert) << "step " << s + 1;
        EXPECT_EQ(loads[s][l].dropped, want_loads[s][l].dropped) << "step " << s + 1;
        EXPECT_EQ(loads[s][l].assignments, want_loads[s][l].assignments) << "step " << s + 1;
      }
    }
  }
}
