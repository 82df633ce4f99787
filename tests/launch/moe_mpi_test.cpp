// A mixture-of-experts GPT-2 under data and expert parallelism (with and without ZeRO-1),
// through pretrain under mpirun: the routing groups are one sequence each, whatever rank
// or micro-batch holds it, so every layout drops the same assignments and gives the
// one-process run's losses, auxiliary losses, expert loads, grad norms and parameters.
// A checkpoint written with the experts split over 2 ranks resumes with them split over
// 4, or whole in one process.
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

std::string layout(int dp, bool zero1, int ep = 1) {
  return kMoe + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) + " --parallel.zero1 " +
         (zero1 ? "true" : "false") + " --parallel.ep " + std::to_string(ep);
}

struct Reference {
  std::string dir;
  std::vector<std::string> losses, norms, aux, z;
  std::vector<std::vector<gpt::test::MoeLayerRecord>> loads;
};

// The one-process run every layout is compared with.
Reference one_process(const std::string& name) {
  Reference ref{fresh_dir(name), {}, {}, {}, {}, {}};
  RunResult r = run_pretrain(layout(1, false) + " --run.dir " + ref.dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ref.losses = train_losses(ref.dir), ref.norms = train_field(ref.dir, "grad_norm");
  ref.aux = train_field(ref.dir, "moe_aux"), ref.z = train_field(ref.dir, "moe_z");
  ref.loads = moe_layer_records(ref.dir);
  return ref;
}

// Losses, grad norms, auxiliary losses and final parameters within 1e-5 of the reference;
// the per-expert loads and drops (counts) exactly.
void expect_matches(const std::string& d, const Reference& want, const std::string& what) {
  SCOPED_TRACE(what);
  const auto got = train_losses(d);
  ASSERT_EQ(got.size(), want.losses.size());
  const double loss_diff = max_relative_difference(got, want.losses);
  const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want.norms);
  const double aux_diff = std::max(max_relative_difference(train_field(d, "moe_aux"), want.aux),
                                   max_relative_difference(train_field(d, "moe_z"), want.z));
  const double param_diff = parameter_distance(d, want.dir);
  std::printf("  %s, max rel diff: loss %.2e, grad norm %.2e, aux losses %.2e, final parameters %.2e\n",
              what.c_str(), loss_diff, norm_diff, aux_diff, param_diff);
  EXPECT_LE(loss_diff, 1e-5);
  EXPECT_LE(norm_diff, 1e-5);
  EXPECT_LE(aux_diff, 1e-5);
  EXPECT_LE(param_diff, 1e-5);
  const auto loads = moe_layer_records(d);
  ASSERT_EQ(loads.size(), want.loads.size());
  for (size_t s = 0; s < loads.size(); ++s) {
    ASSERT_EQ(loads[s].size(), want.loads[s].size()) << "step " << s + 1;
    for (size_t l = 0; l < loads[s].size(); ++l) {
      EXPECT_EQ(loads[s][l].tokens_per_expert, want.loads[s][l].tokens_per_expert) << "step " << s + 1;
      EXPECT_EQ(loads[s][l].dropped, want.loads[s][l].dropped) << "step " << s + 1;
      EXPECT_EQ(loads[s][l].assignments, want.loads[s][l].assignments) << "step " << s + 1;
    }
  }
}

}  // namespace

// Expert parallelism: each rank holds E / ep experts, tokens travel to them by
// all-to-all, expert gradients are reduced over the ranks holding the same experts
// (dp / ep of them) and ZeRO-1 shards each region over its own group.
TEST(MoeMpi, ExpertParallelLayoutsMatchOneProcess) {
  const Reference ref = one_process("moe_ep_ref");
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
    expect_matches(d, ref, l.name);
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
