// Sharded checkpoints under mpirun: a rank killed with SIGKILL at random moments of a
// save never leaves a "latest" checkpoint that fails to resume bit-exactly, and an
// asynchronous save writes exactly what a synchronous one does.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "core/checkpoint/hdf5_file.h"
#include "run_pretrain.h"

namespace fs = std::filesystem;
using gpt::test::RunResult;
using gpt::test::fresh_dir;
using gpt::test::train_losses;
using Clock = std::chrono::steady_clock;

namespace {

// Two ranks, ZeRO-1, the tiny model of pretrain_mpi_test.cpp.
const std::string kTwoRanks =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.warmup 2"
    " --train.threads 1 --parallel.bucket_mb 0.02 --train.grad_accum 2 --parallel.zero1 true";

RunResult run_two(const std::string& args) {
  return gpt::test::run_command(std::string("OMP_NUM_THREADS=1 timeout -k 10 120 ") + MPIRUN_LOCAL + " -np 2 " +
                                PRETRAIN_BIN + " " + args);
}

// The pid of one rank of the job writing to run_dir (a rank's command line starts with
// the binary; mpirun's does not), or -1.
int rank_pid(const std::string& run_dir, int pick) {
  RunResult r = gpt::test::run_command("pgrep -f '^" + std::string(PRETRAIN_BIN) + " .*" + run_dir + "$'");
  std::vector<int> pids;
  std::stringstream in(r.output);
  for (int p; in >> p;) pids.push_back(p);
  return pids.empty() ? -1 : pids[size_t(pick) % pids.size()];
}

}  // namespace

TEST(CheckpointMpi, RankKilledDuringSavesAlwaysResumesBitExactly) {
  constexpr int kSteps = 6, kKills = 20;
  // checkpoint_every 1 with a pause between piece writes: saves fill most of the run.
  const std::string args = kTwoRanks + " --train.steps " + std::to_string(kSteps) +
                           " --run.checkpoint_every 1 --run.keep 2 --debug.save_delay_ms 2 --run.dir ";
  const std::string ref = fresh_dir("kill_ref");
  const auto t0 = Clock::now();
  RunResult r = run_two(args + ref);
  const double run_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(ref);
  ASSERT_EQ(want.size(), size_t(kSteps));
  std::mt19937 rng(20261203);
  // Uniform over the run, short of its last moments (a kill after the exit kills nothing).
  std::uniform_real_distribution<double> when(0.0, 0.9 * run_ms);
  int killed = 0;
  for (int k = 0; k < kKills; ++k) {
    const std::string d = fresh_dir("kill" + std::to_string(k));
    RunResult first;
    std::thread job([&] { first = run_two(args + d); });
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(when(rng)));
    int pid = -1;
    while ((pid = rank_pid(d, k)) < 0 && Clock::now() - start < std::chrono::seconds(20))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (pid > 0 && ::kill(pid, SIGKILL) == 0) ++killed;
    job.join();
    SCOPED_TRACE("kill " + std::to_string(k));
    // Whatever was interrupted, the latest complete checkpoint resumes bit-exactly.
    RunResult again = run_two(kTwoRanks + " --train.steps " + std::to_string(kSteps) +
                              " --run.checkpoint_every 1 --run.keep 2 --run.resume true --run.dir " + d);
    ASSERT_EQ(again.exit_code, 0) << first.output << again.output;
    int64_t from = 0;
    const size_t at = again.output.find(" at step ");
    if (at != std::string::npos) from = std::stoll(again.output.substr(at + 9));
    const auto got = train_losses(d);
    ASSERT_GE(got.size(), size_t(kSteps - from));
    for (int64_t s = from; s < kSteps; ++s)
      EXPECT_EQ(got[got.size() - size_t(kSteps - s)], want[size_t(s)]) << "step " << s + 1 << " resumed from " << from;
  }
  std::printf("[kill] %d of %d runs had a rank killed (run %.0f ms)\n", killed, kKills, run_ms);
  EXPECT_GE(killed, kKills * 3 / 4);
}

TEST(CheckpointMpi, AsyncSaveWritesExactlyWhatSyncWritesAndResumesBitExactly) {
  const std::string args = kTwoRanks + " --train.steps 6 --run.checkpoint_every 2 --run.keep 5 --run.dir ";
  const std::string sync = fresh_dir("sync"), async = fresh_dir("async");
  RunResult r = run_two(args + sync);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_two(args + async + " --run.async_checkpoint true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(train_losses(sync), train_losses(async));
  int compared = 0;
  for (const char* step : {"00000002", "00000004", "00000006"})
    for (const char* rank : {"rank_00000.h5", "rank_00001.h5"}) {
      const std::string rel = std::string("/ckpt_") + step + "/" + rank;
      ASSERT_TRUE(fs::exists(async + "/ckpt_" + step + "/COMPLETE")) << step;
      gpt::CheckpointReader a(sync + rel), b(async + rel);
      ASSERT_EQ(a.datasets(), b.datasets()) << rel;
      for (const char* attr : {"step", "optim.t", "data.state", "rank", "world"})
        EXPECT_EQ(a.attr_ints(attr), b.attr_ints(attr)) << rel << " " << attr;
      for (const std::string& ds : a.datasets()) {
        const int64_t n = a.shape(ds)[0];
        std::vector<float> va(static_cast<size_t>(n)), vb(static_cast<size_t>(n));
        a.read_range(ds, 0, n, va.data());
        b.read_range(ds, 0, n, vb.data());
        ASSERT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float))) << rel << " " << ds;
        ++compared;
      }
    }
  std::printf("[async] %d datasets bit-identical\n", compared);
  const std::string d = fresh_dir("async_resume");
  r = run_two(kTwoRanks + " --train.steps 6 --run.resume_from " + async + "/ckpt_00000004 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto want = train_losses(sync), got = train_losses(d);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], want[4]);
  EXPECT_EQ(got[1], want[5]);
}
