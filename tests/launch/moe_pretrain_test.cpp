// A mixture-of-experts GPT-2 through pretrain in one process: the log's per-expert loads
// and auxiliary losses against what can be worked out by hand, bit-identical reruns and
// resumes, and one line naming the key for every configuration MoE does not support yet.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "core/model/memory_plan.h"
#include "moe_metrics_reader.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::expect_one_line_error;
using gpt::test::fresh_dir;
using gpt::test::moe_layer_records;
using gpt::test::run_pretrain;
using gpt::test::train_field;
using gpt::test::train_losses;

namespace {

// Blocks 1 and 3 MoE (every 2), E 4, top-2; 2 x 16 tokens x 2 micro-batches per step.
const std::string kMoe =
    " --model.n_layer 4 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.grad_accum 2"
    " --train.threads 2 --train.warmup 2 --moe.experts 4 --moe.top_k 2 --moe.every 2";
constexpr long long kTokensPerStep = 2 * 16 * 2, kTopK = 2, kExperts = 4;

}  // namespace

// Every step, each MoE layer (blocks 1 and 3, no other) accounts for all of its
// assignments: kept per expert plus dropped equals tokens x k. With capacity factor
// 1.25 an expert has ceil(1.25 x 16 x 2 / 4) = 10 slots in each of the step's 4 groups
// (one sequence each), so at most 40 kept; dropless drops none.
TEST(MoePretrain, ExpertCountsAccountForEveryAssignment) {
  for (const char* cf : {"1.25", "0"}) {
    SCOPED_TRACE(std::string("capacity_factor ") + cf);
    const std::string dir = fresh_dir(std::string("moe_counts_") + (cf[0] == '0' ? "dropless" : "cap"));
    auto r = run_pretrain(kMoe + " --moe.capacity_factor " + cf +
                          " --moe.aux_loss 0.01 --moe.z_loss 1e-3 --train.steps 4 --run.save_final false --run.dir " + dir);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("moe_aux"), std::string::npos) << r.output;
    const auto steps = moe_layer_records(dir);
    ASSERT_EQ(steps.size(), 4u);
    long long dropped_total = 0;
    for (const auto& layers : steps) {
      ASSERT_EQ(layers.size(), 2u);
      EXPECT_EQ(layers[0].layer, 1);
      EXPECT_EQ(layers[1].layer, 3);
      for (const auto& l : layers) {
        ASSERT_EQ(l.tokens_per_expert.size(), size_t(kExperts));
        EXPECT_EQ(l.assignments, kTokensPerStep * kTopK);
        const long long kept = std::accumulate(l.tokens_per_expert.begin(), l.tokens_per_expert.end(), 0LL);
        EXPECT_EQ(kept + l.dropped, l.assignments);
        for (long long n : l.tokens_per_expert) {
          EXPECT_LE(n, cf[0] == '0' ? l.assignments : 40);
        }
        dropped_total += l.dropped;
      }
    }
    if (cf[0] == '0') {
      EXPECT_EQ(dropped_total, 0);
    }
    for (const std::string& z : train_field(dir, "moe_z")) EXPECT_GT(std::stod(z), 0.0);
  }
}

// The auxiliary losses enter the loss as their coefficient times the unweighted term, and
// the first step's forward does not depend on the coefficients: doubling moe.aux_loss
// doubles step 1's moe_aux, moe.z_loss 0 logs a z-loss of exactly 0, and the first
// step's cross-entropy is the same bits (its gradient, and so step 2, differ).
TEST(MoePretrain, AuxiliaryLossesScaleWithTheirCoefficients) {
  const std::string a = fresh_dir("moe_coef_a"), b = fresh_dir("moe_coef_b");
  const std::string common = kMoe + " --moe.capacity_factor 1.25 --train.steps 2 --run.save_final false";
  ASSERT_EQ(run_pretrain(common + " --moe.aux_loss 0.01 --moe.z_loss 0 --run.dir " + a).exit_code, 0);
  ASSERT_EQ(run_pretrain(common + " --moe.aux_loss 0.02 --moe.z_loss 1e-3 --run.dir " + b).exit_code, 0);
  const auto aux_a = train_field(a, "moe_aux"), aux_b = train_field(b, "moe_aux");
  ASSERT_EQ(aux_a.size(), 2u);
  ASSERT_EQ(aux_b.size(), 2u);
  EXPECT_GT(std::stod(aux_a[0]), 0.0);
  EXPECT_NEAR(std::stod(aux_b[0]), 2 * std::stod(aux_a[0]), 1e-6 * std::stod(aux_b[0]));
  for (const std::string& z : train_field(a, "moe_z")) EXPECT_EQ(std::stod(z), 0.0);
  EXPECT_EQ(train_losses(a)[0], train_losses(b)[0]);
  EXPECT_NE(train_losses(a)[1], train_losses(b)[1]);
}

TEST(MoePretrain, SameSeedIsBitIdenticalAndResumeContinuesBitIdentically) {
  const std::string args = kMoe + " --moe.capacity_factor 1.25 --moe.aux_loss 0.01 --moe.z_loss 1e-3 --train.steps 6";
  const std::string full = fresh_dir("moe_full"), again = fresh_dir("moe_again"), part = fresh_dir("moe_part");
  ASSERT_EQ(run_pretrain(args + " --run.checkpoint_every 3 --run.dir " + full).exit_code, 0);
  ASSERT_EQ(run_pretrain(args + " --run.save_final false --run.dir " + again).exit_code, 0);
  EXPECT_EQ(train_losses(full), train_losses(again));
  EXPECT_EQ(train_field(full, "moe_aux"), train_field(again, "moe_aux"));
  fs::create_directories(part);
  fs::copy(full + "/ckpt_00000003", part + "/ckpt_00000003");
  auto r = run_pretrain(args + " --run.resume true --run.dir " + part);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lf = train_losses(full), lp = train_losses(part);
  ASSERT_EQ(lf.size(), 6u);
  ASSERT_EQ(lp.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(lp[i], lf[i + 3]) << "step " << i + 4;
}

TEST(MoePretrain, UnsupportedCombinationsNameTheKey) {
  const std::string moe = " --moe.experts 4 --moe.top_k 2";
  expect_one_line_error(run_pretrain(moe + " --model.preset llama-tiny --model.n_layer 2"), "moe.experts");
  // Routing groups are whole sequences; sequence parallelism would split them.
  expect_one_line_error(run_pretrain(moe + " --parallel.tp 2 --parallel.sp true"), "parallel.sp");
  expect_one_line_error(run_pretrain(moe + " --train.device cuda"), "moe.experts");
  expect_one_line_error(run_pretrain(moe + " --train.dtype bf16"), "moe.experts");
  expect_one_line_error(run_pretrain(moe + " --train.recompute selective"), "train.recompute");
  expect_one_line_error(run_pretrain(moe + " --train.recompute full"), "train.recompute");
}

TEST(MoePretrain, BadValuesNameTheKey) {
  expect_one_line_error(run_pretrain("--moe.experts -1"), "moe.experts");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.top_k 5"), "moe.top_k");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.top_k 0"), "moe.top_k");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.capacity_factor -1"), "moe.capacity_factor");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.every 0"), "moe.every");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.every 5"), "moe.every");  // tiny has 4 layers
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.expert_hidden -2"), "moe.expert_hidden");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.shared_experts -1"), "moe.shared_experts");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.aux_loss -0.1"), "moe.aux_loss");
  expect_one_line_error(run_pretrain("--moe.experts 4 --moe.z_loss -1"), "moe.z_loss");
  expect_one_line_error(run_pretrain("--moe.experts four"), "moe.experts");
  // Expert parallelism: ep splits the experts (so divides E) over data-parallel ranks (so divides dp).
  expect_one_line_error(run_pretrain("--moe.experts 4 --parallel.ep 3"), "parallel.ep");
  expect_one_line_error(run_pretrain(kMoe + " --parallel.ep 2 --run.dir " + fresh_dir("moe_ep_dp")), "parallel.ep");
  expect_one_line_error(run_pretrain("--parallel.ep 2"), "parallel.ep");  // no experts to split
  // A group straddling two sequences would depend on which sequences share a rank.
  expect_one_line_error(run_pretrain(kMoe + " --moe.group_tokens 12 --run.dir " + fresh_dir("moe_group")),
                        "moe.group_tokens");
}

// plan_only gives the parameter counts and the memory plan with the MoE terms
// (core/model/memory_plan.h, counted by hand in tests/core/recompute_test.cpp), for the
// one recompute mode MoE runs under.
TEST(MoePretrain, PlanOnlyGivesTotalAndActiveParametersAndTheMoePlan) {
  auto r = run_pretrain(kMoe + " --moe.capacity_factor 1.25 --train.plan_only true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Embeddings 101 x 32 + 32 x 32, final norm 64; per block 2 LayerNorms 128, attention
  // 32 x 96 + 96 + 32 x 32 + 32 = 4224; dense MLP 32 x 128 + 128 + 128 x 32 + 32 = 8352;
  // MoE MLP: router 4 x 32 + 4 experts x 8352 = 33536. Total 4256 + 2 x (4352 + 8352)
  // + 2 x (4352 + 33536) + 64 = 105504; active: 2 of the 4 experts, 105504 - 2 x 2 x 8352.
  EXPECT_NE(r.output.find("(105504 parameters)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("105504 parameters in all, 72096 active per token; a rank holds 105504"),
            std::string::npos) << r.output;
  gpt::GPTConfig m;
  m.n_layer = 4, m.n_head = 2, m.n_embd = 32, m.vocab_size = 101, m.block_size = 32;
  m.moe.experts = 4, m.moe.top_k = 2, m.moe.capacity_factor = 1.25f, m.moe_every = 2;
  const std::string plan = gpt::plan_memory(m, 2, 16, gpt::Recompute::None, 1).describe();
  EXPECT_NE(r.output.find("recompute none      " + plan), std::string::npos) << plan << "\n" << r.output;
  EXPECT_NE(r.output.find("recompute selective not with moe.experts > 0"), std::string::npos) << r.output;
  // With experts over 2 ranks a rank holds 2 of each MoE block's 4: 2 x 2 x 8352 fewer.
  // One process has one data-parallel rank, which ep = 2 cannot split: it says so.
  r = run_pretrain(kMoe + " --parallel.ep 2 --train.plan_only true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("a rank holds 72096 (2 of each MoE block's experts, parallel.ep = 2)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("parallel.ep = 2 does not divide the 1 data-parallel ranks"), std::string::npos)
      << r.output;
}

// The GPT-2 124M MoE preset's parameter counts, by hand: GPT-2 124M with 50,304
// vocabulary rows has 124,475,904; each of its 6 MoE blocks (1, 3, ..., 11) trades the
// dense MLP, 2 x 768 x 3072 + 3072 + 768 = 4,722,432, for a router 8 x 768 and 8 experts
// of that size: + 6,144 + 7 x 4,722,432. Active: 2 of the 8 experts.
TEST(MoePretrain, PlanOnlyKnowsTheGpt2MoePreset) {
  auto r = run_pretrain(std::string(CONFIGS_DIR) + "/gpt2-124M-moe.ini --train.plan_only true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const long long expert = 4722432, total = 124475904 + 6 * (6144 + 7 * expert), active = total - 6 * 6 * expert;
  EXPECT_NE(r.output.find(std::to_string(total) + " parameters in all, " + std::to_string(active) + " active per token"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("recompute none      params"), std::string::npos) << r.output;
}
