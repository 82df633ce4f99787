// Pipeline parallelism through pretrain under mpirun: every schedule and layout gives
// the one-process run's losses, gradient norms and final parameters; a checkpoint
// written by a pipeline resumes under other layouts; bad layouts stop at start-up.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/checkpoint/sharded_checkpoint.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::fresh_dir;
using gpt::test::max_relative_difference;
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

// Relative L2 distance between the final parameters of two runs, over every parameter
// (read back whole from each run's final checkpoint, whatever layout wrote it).
double parameter_distance(const std::string& run_a, const std::string& run_b) {
  const gpt::TensorMap a = gpt::read_global_params(run_a + "/ckpt_00000010");
  const gpt::TensorMap b = gpt::read_global_params(run_b + "/ckpt_00000010");
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (const auto& [name, t] : b) {
    auto it = a.find(name);
    if (it == a.end()) {
      ADD_FAILURE() << "parameter " << name << " missing";
      continue;
    }
    EXPECT_EQ(it->second.shape, t.shape) << name;
    for (size_t i = 0; i < t.data.size() && i < it->second.data.size(); ++i) {
      const double d = double(it->second.data[i]) - double(t.data[i]);
      diff += d * d;
      norm += double(t.data[i]) * double(t.data[i]);
    }
  }
  return std::sqrt(diff / norm);
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
