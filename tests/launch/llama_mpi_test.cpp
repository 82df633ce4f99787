// The LLaMA family under mpirun: data parallelism (with and without ZeRO-1), tensor
// parallelism (grouped-query and multi-head kv) and pipeline stages give the one-process
// run's losses, gradient norms and final parameters within 1e-5 over 10 steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "final_params.h"
#include "run_pretrain.h"

using gpt::test::fresh_dir;
using gpt::test::max_relative_difference;
using gpt::test::parameter_distance;
using gpt::test::run_pretrain;
using gpt::test::run_ranks;
using gpt::test::RunResult;
using gpt::test::train_field;
using gpt::test::train_losses;

namespace {

// GQA: 4 query heads on 2 kv heads, head size 8, untied head, 4 layers (PP=2 and PP=4).
const std::string kLlama =
    " --model.family llama --model.n_layer 4 --model.n_head 4 --model.n_kv_head 2 --model.n_embd 32"
    " --model.ffn_hidden 48 --model.vocab_size 101 --model.block_size 32 --train.seq_len 16"
    " --train.micro_batch 2 --train.warmup 2 --train.threads 1 --parallel.bucket_mb 0.02"
    " --train.steps 10";  // the final checkpoint (ckpt_00000010) holds the final parameters
constexpr int kGlobalMicroBatches = 4;  // dp * grad_accum

std::string layout(const std::string& model, int dp, bool zero1) {
  return model + " --train.grad_accum " + std::to_string(kGlobalMicroBatches / dp) + " --parallel.zero1 " +
         (zero1 ? "true" : "false");
}

// One process's losses and grad norms, then each layout's against them.
void expect_layouts_match(const std::string& model, const std::vector<std::pair<std::string, int>>& layouts) {
  const std::string ref = fresh_dir("llama_ref");
  RunResult r = run_pretrain(layout(model, 1, false) + " --run.dir " + ref);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(ref), want_norms = train_field(ref, "grad_norm");
  ASSERT_EQ(want.size(), 10u);
  for (const auto& [args, ranks] : layouts) {
    SCOPED_TRACE(args);
    const std::string d = fresh_dir("llama_layout");
    r = run_ranks(ranks, args + " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto got = train_losses(d);
    ASSERT_EQ(got.size(), want.size());
    const double loss_diff = max_relative_difference(got, want);
    const double norm_diff = max_relative_difference(train_field(d, "grad_norm"), want_norms);
    const double param_diff = parameter_distance(d, ref);
    std::printf("  %d ranks, max rel diff: loss %.2e, grad norm %.2e, final parameters %.2e  (%s)\n", ranks,
                loss_diff, norm_diff, param_diff, args.substr(args.find("--train.grad_accum")).c_str());
    EXPECT_LE(loss_diff, 1e-5);
    EXPECT_LE(norm_diff, 1e-5);
    EXPECT_LE(param_diff, 1e-5);
  }
}

}  // namespace

TEST(LlamaMpi, DataParallelLayoutsMatchOneProcess) {
  expect_layouts_match(kLlama, {{layout(kLlama, 2, false), 2},
                                {layout(kLlama, 2, true), 2},
                                {layout(kLlama, 4, false), 4},
                                {layout(kLlama, 4, true), 4}});
}

TEST(LlamaMpi, PipelineStagesMatchOneProcess) {
  expect_layouts_match(kLlama, {{layout(kLlama, 1, false) + " --parallel.pp 2", 2},
                                {layout(kLlama, 1, false) + " --parallel.pp 2 --parallel.schedule zb-h1", 2},
                                {layout(kLlama, 2, true) + " --parallel.pp 2", 4},
                                {layout(kLlama, 1, false) + " --parallel.pp 4", 4}});
  // A tied head: the last stage's copy of wte summed with the first stage's.
  const std::string tied = kLlama + " --model.tie_embeddings true";
  expect_layouts_match(tied, {{layout(tied, 1, false) + " --parallel.pp 2", 2}});
}

// Tensor parallelism splits the query heads and the kv heads by rank: grouped-query
// (4 query heads on 2 kv heads: each of 2 ranks one kv head and its 2 query heads), with
// data parallelism and ZeRO-1 around it, sequence parallelism (the RMSNorms and residual
// adds on each rank's 16 of the 32 rows, with pipeline stages handing over shards), and
// multi-head kv. A kv head count tp does not divide stops at start-up naming the key.
TEST(LlamaMpi, TensorParallelMatchesOneProcess) {
  expect_layouts_match(kLlama, {{layout(kLlama, 1, false) + " --parallel.tp 2", 2},
                                {layout(kLlama, 2, true) + " --parallel.tp 2", 4},
                                {layout(kLlama, 1, false) + " --parallel.tp 2 --parallel.pp 2", 4},
                                {layout(kLlama, 1, false) + " --parallel.tp 2 --parallel.sp true", 2},
                                {layout(kLlama, 2, true) + " --parallel.tp 2 --parallel.sp true", 4},
                                {layout(kLlama, 1, false) + " --parallel.tp 2 --parallel.sp true --parallel.pp 2 "
                                                            "--parallel.schedule zb-h1", 4}});
  std::string mha = kLlama;
  mha.replace(mha.find("--model.n_kv_head 2"), 19, "--model.n_kv_head 4");
  expect_layouts_match(mha, {{layout(mha, 1, false) + " --parallel.tp 4", 4}});
  RunResult r = run_ranks(4, layout(kLlama, 1, false) + " --parallel.tp 4 --run.dir " + fresh_dir("llama_tp_kv"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model.n_kv_head = 2 is not divisible by parallel.tp = 4"), std::string::npos) << r.output;
}
