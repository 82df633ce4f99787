// The LLaMA family through pretrain: it trains and resumes bit-identically from its
// checkpoint, samples from it, plans the published shapes' memory, and bad LLaMA
// configurations stop with one line naming the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "core/model/gpt_config.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::expect_one_line_error;
using gpt::test::fresh_dir;
using gpt::test::run_pretrain;
using gpt::test::train_losses;

namespace {

// GQA (6 query heads on 2 kv heads, head size 8), an untied head.
const std::string kLlama =
    " --model.family llama --model.n_layer 2 --model.n_head 6 --model.n_kv_head 2 --model.n_embd 48"
    " --model.ffn_hidden 64 --model.vocab_size 101 --model.block_size 32 --train.seq_len 16"
    " --train.micro_batch 2 --train.grad_accum 2 --train.threads 2 --train.warmup 2";

// kLlama with one of its keys set to another value (a key may be given once only).
std::string with(const std::string& key, const std::string& value) {
  std::string a = kLlama;
  const size_t at = a.find(" --" + key + " ");
  const size_t end = a.find(" --", at + 3);
  return a.replace(at, end - at, " --" + key + " " + value);
}

}  // namespace

TEST(LlamaPretrain, ResumeFromCheckpointContinuesBitIdenticallyAndSamples) {
  std::string full = fresh_dir("llama_full"), part = fresh_dir("llama_part");
  auto r = run_pretrain(kLlama + " --train.steps 8 --run.checkpoint_every 4 --run.keep 5 --sample.tokens 5 --run.dir " + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(llama)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("---- sample"), std::string::npos) << r.output;
  fs::create_directories(part);
  fs::copy(full + "/ckpt_00000004", part + "/ckpt_00000004");
  r = run_pretrain(kLlama + " --train.steps 8 --run.resume true --run.dir " + part);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lf = train_losses(full), lp = train_losses(part);
  ASSERT_EQ(lf.size(), 8u);
  ASSERT_EQ(lp.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(lp[i], lf[i + 4]) << "step " << i + 5;
  // Parameters keep their global names in the checkpoint, lm_head beside wte.
  r = gpt::test::run_command(std::string(CKPT_BIN) + " info " + full + "/ckpt_00000008");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"wte", "lm_head", "lnf.weight", "blocks.1.attn.qkv.weight", "blocks.1.mlp.gate_up.weight",
                           "blocks.1.mlp.down.weight"})
    EXPECT_NE(r.output.find(name), std::string::npos) << name << "\n" << r.output;
}

TEST(LlamaPretrain, PlanOnlyKnowsThePublishedShapes) {
  auto r = run_pretrain(std::string(CONFIGS_DIR) + "/llama3-8B.ini --train.plan_only true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("llama3-8B (8030261248 parameters)"), std::string::npos) << r.output;
  r = run_pretrain(std::string(CONFIGS_DIR) + "/llama2-7B.ini --train.plan_only true");
  EXPECT_NE(r.output.find("llama2-7B (6738415616 parameters)"), std::string::npos) << r.output;
  r = run_pretrain(std::string(CONFIGS_DIR) + "/llama-1B.ini --train.plan_only true");
  EXPECT_NE(r.output.find("llama-1B (1235814400 parameters)"), std::string::npos) << r.output;
}

TEST(LlamaPretrain, BadConfigurationsNameTheKey) {
  expect_one_line_error(run_pretrain(with("model.family", "mistral") + " --run.dir " + fresh_dir("bad_family")),
                        "config key 'model.family' must be gpt2 or llama, got 'mistral'");
  expect_one_line_error(run_pretrain(with("model.n_kv_head", "4") + " --run.dir " + fresh_dir("bad_kv")),
                        "config key 'model.n_head' (6) is not divisible by 'model.n_kv_head' (4)");
  expect_one_line_error(run_pretrain(with("model.n_embd", "42") + " --run.dir " + fresh_dir("bad_hs")),
                        "head size n_embd / n_head = 42 / 6 = 7 is odd, and RoPE rotates pairs of channels");
  expect_one_line_error(run_pretrain(with("model.family", "gpt2") + " --run.dir " + fresh_dir("gpt_kv")),
                        "config key 'model.n_kv_head' (2) needs model.family = llama");
  expect_one_line_error(run_pretrain(kLlama + " --model.tie_embeddings maybe --run.dir " + fresh_dir("bad_tie")),
                        "config key 'model.tie_embeddings' must be true or false, got 'maybe'");
}
