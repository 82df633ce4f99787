// The step watchdog under mpirun: the stalled rank names the phase it is stuck in, the
// ranks waiting for it name communication, under data and pipeline parallelism, and a
// hung stage is named before the communicator's timeout ends the job.
//
// The steps take milliseconds; the stall is 4 s (or a hang), the bar max(5 x median, 2 s):
// a loaded machine would have to slow the steps 100-fold to change the outcome.
#include <gtest/gtest.h>

#include <sstream>

#include "run_pretrain.h"

using gpt::test::fresh_dir;
using gpt::test::metrics_field;
using gpt::test::RunResult;
using gpt::test::run_ranks;

namespace {

const std::string kWatched =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.grad_accum 4"
    " --train.threads 1 --train.warmup 2 --train.steps 8 --run.save_final false"
    " --train.watchdog_k 5 --train.watchdog_min_s 2";

std::vector<std::string> watchdog_lines(const std::string& output) {
  std::istringstream in(output);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("watchdog:", 0) == 0) out.push_back(line);
  return out;
}

// The one watchdog line of `rank` begins with "watchdog: rank R step S in phase P for ".
void expect_line(const std::vector<std::string>& lines, int rank, int step, const std::string& phase) {
  const std::string rank_prefix = "watchdog: rank " + std::to_string(rank) + " ";
  std::vector<std::string> mine;
  for (const std::string& l : lines)
    if (l.rfind(rank_prefix, 0) == 0) mine.push_back(l);
  ASSERT_EQ(mine.size(), 1u) << "rank " << rank;
  EXPECT_EQ(mine[0].rfind(rank_prefix + "step " + std::to_string(step) + " in phase " + phase + " for ", 0), 0u)
      << mine[0];
}

}  // namespace

TEST(WatchdogMpi, DataParallelNamesTheStalledRanksPhaseAndItsPeerWaiting) {
  const std::string d = fresh_dir("watchdog_dp");
  RunResult r = run_ranks(2, kWatched + " --debug.slow_step 6 --debug.slow_rank 1 --debug.slow_phase backward"
                                        " --debug.slow_s 4 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = watchdog_lines(r.output);
  EXPECT_EQ(lines.size(), 2u) << r.output;
  expect_line(lines, 1, 6, "backward");
  expect_line(lines, 0, 6, "communication");  // waiting in the gradient all-reduce
  // Rank 0 keeps the metrics log: its own record.
  EXPECT_EQ(metrics_field(d, "watchdog", "rank"), std::vector<std::string>{"0"});
  EXPECT_EQ(metrics_field(d, "watchdog", "phase"), std::vector<std::string>{"\"communication\""});
}

TEST(WatchdogMpi, PipelineStageStalledInBackwardAndTheStageWaitingForIt) {
  RunResult r = run_ranks(2, kWatched + " --parallel.pp 2 --debug.slow_step 6 --debug.slow_rank 0"
                                        " --debug.slow_phase backward --debug.slow_s 4 --run.dir " +
                                 fresh_dir("watchdog_pp"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = watchdog_lines(r.output);
  EXPECT_EQ(lines.size(), 2u) << r.output;
  expect_line(lines, 0, 6, "backward");
  expect_line(lines, 1, 6, "communication");  // the last stage waits for the next activation
}

// debug.hang stops stage 1 after its first forward of step 6, for good: the watchdog
// names it (and stage 0 waiting) seconds before the 12 s communication timeout aborts.
TEST(WatchdogMpi, HungPipelineStageIsNamedBeforeTheCommunicationTimeout) {
  RunResult r = run_ranks(2, kWatched + " --parallel.pp 2 --debug.exit_step 6 --debug.exit_rank 1 --debug.hang true"
                                        " --parallel.timeout_s 12 --run.dir " + fresh_dir("watchdog_hang"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the job hung until the test's time limit:\n" << r.output;
  const auto lines = watchdog_lines(r.output);
  expect_line(lines, 1, 6, "forward");
  expect_line(lines, 0, 6, "communication");
  const size_t timeout = r.output.find("gpt comm timeout");
  ASSERT_NE(timeout, std::string::npos) << r.output;
  for (const std::string& l : lines) EXPECT_LT(r.output.find(l), timeout) << r.output;
}
