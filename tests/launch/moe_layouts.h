// The MoE model every layout test of pretrain runs (4 layers, blocks 1 and 3 MoE with 4
// experts, top-2, capacity factor 1.25 so some assignments are dropped, both auxiliary
// losses on), its one-process reference run, and the comparison of a layout's run with
// it: losses, grad norms, both auxiliary losses and final parameters within 1e-5
// relative; per-expert loads, drops and assignments (counts) exactly, every MoE layer.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "final_params.h"
#include "moe_metrics_reader.h"
#include "run_pretrain.h"

namespace gpt::test {

inline const std::string kMoeModel =
    " --model.n_layer 4 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02 --train.steps 10"
    " --moe.experts 4 --moe.top_k 2 --moe.every 2 --moe.capacity_factor 1.25"
    " --moe.aux_loss 0.01 --moe.z_loss 1e-3";
constexpr int kMoeGlobalMicroBatches = 4;  // dp * grad_accum: the same global batch everywhere

// kMoeModel at `dp` data-parallel ranks (grad_accum keeps the global batch).
inline std::string moe_args(int dp) {
  return kMoeModel + " --train.grad_accum " + std::to_string(kMoeGlobalMicroBatches / dp);
}

struct MoeReference {
  std::string dir;
  std::vector<std::string> losses, norms, aux, z;
  std::vector<std::vector<MoeLayerRecord>> loads;
};

// The one-process run every layout is compared with.
inline MoeReference moe_one_process(const std::string& name) {
  MoeReference ref{fresh_dir(name), {}, {}, {}, {}, {}};
  const RunResult r = run_pretrain(moe_args(1) + " --run.dir " + ref.dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ref.losses = train_losses(ref.dir), ref.norms = train_field(ref.dir, "grad_norm");
  ref.aux = train_field(ref.dir, "moe_aux"), ref.z = train_field(ref.dir, "moe_z");
  ref.loads = moe_layer_records(ref.dir);
  return ref;
}

inline void expect_moe_run_matches(const std::string& d, const MoeReference& want, const std::string& what) {
  SCOPED_TRACE(what);
  const auto got = train_losses(d);
  ASSERT_EQ(got.size(), want.losses.size());
  const double loss_diff = max_relative_difference(got, want.losses);
  const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want.norms);
  const double aux_diff = max_relative_difference(train_field(d, "moe_aux"), want.aux);
  const double z_diff = max_relative_difference(train_field(d, "moe_z"), want.z);
  const double param_diff = parameter_distance(d, want.dir);
  std::printf("  %s, max rel diff: loss %.2e, grad norm %.2e, moe_aux %.2e, moe_z %.2e, final parameters %.2e\n",
              what.c_str(), loss_diff, norm_diff, aux_diff, z_diff, param_diff);
  EXPECT_LE(loss_diff, 1e-5);
  EXPECT_LE(norm_diff, 1e-5);
  EXPECT_LE(aux_diff, 1e-5);
  EXPECT_LE(z_diff, 1e-5);
  EXPECT_LE(param_diff, 1e-5);
  // The loads are counts: the same routing gives the one-process figures exactly, every
  // MoE layer listed whichever rank or stage holds it.
  const auto loads = moe_layer_records(d);
  ASSERT_EQ(loads.size(), want.loads.size());
  for (size_t s = 0; s < loads.size(); ++s) {
    ASSERT_EQ(loads[s].size(), want.loads[s].size()) << "step " << s + 1;
    for (size_t l = 0; l < loads[s].size(); ++l) {
      EXPECT_EQ(loads[s][l].layer, want.loads[s][l].layer) << "step " << s + 1;
      EXPECT_EQ(loads[s][l].tokens_per_expert, want.loads[s][l].tokens_per_expert) << "step " << s + 1;
      EXPECT_EQ(loads[s][l].dropped, want.loads[s][l].dropped) << "step " << s + 1;
      EXPECT_EQ(loads[s][l].assignments, want.loads[s][l].assignments) << "step " << s + 1;
    }
  }
}

}  // namespace gpt::test
