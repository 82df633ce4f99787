// The step watchdog (launch/watchdog.h): its rule on chosen clock readings (no thread, no
// sleeping), then through pretrain with a stall injected by debug.slow_*.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>

#include "launch/watchdog.h"
#include "run_pretrain.h"

using gpt::Phase;
using gpt::Watchdog;
using gpt::test::expect_one_line_error;
using gpt::test::fresh_dir;
using gpt::test::metrics_field;
using gpt::test::run_pretrain;

namespace {

using Clock = Watchdog::Clock;
Clock::time_point at(Clock::time_point t0, double s) {
  return t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// One step that begins at `begin` s and ends at `end` s after t0.
void step(Watchdog& w, int64_t n, Clock::time_point t0, double begin, double end) {
  w.begin_step(n, at(t0, begin));
  w.end_step(at(t0, end));
}

}  // namespace

TEST(Watchdog, ReportsAStepLongerThanKTimesTheMedianOnceNamingItsPhase) {
  Watchdog w({/*k=*/10, /*min_s=*/1, /*rank=*/3}, nullptr, /*start_thread=*/false);
  const Clock::time_point t0 = Clock::now();
  // Warm-up: nothing is judged before 3 steps have completed, however long.
  w.begin_step(1, at(t0, 0));
  EXPECT_FALSE(w.check(at(t0, 1000)));
  w.end_step(at(t0, 0.1));
  step(w, 2, t0, 1, 1.2);
  step(w, 3, t0, 2, 2.3);  // steps of 0.1, 0.2, 0.3 s: median 0.2, so the bar is 10 x 0.2 = 2 s
  EXPECT_FALSE(w.check(at(t0, 1000))) << "between steps nothing is watched";
  w.begin_step(4, at(t0, 10));
  w.enter(Phase::forward, at(t0, 10.2));
  w.enter(Phase::backward, at(t0, 10.5));
  EXPECT_FALSE(w.check(at(t0, 11.9)));
  const auto o = w.check(at(t0, 12.1));
  ASSERT_TRUE(o);
  EXPECT_EQ(o->step, 4);
  EXPECT_EQ(o->phase, Phase::backward);
  EXPECT_NEAR(o->phase_s, 1.6, 1e-6);
  EXPECT_NEAR(o->step_s, 2.1, 1e-6);
  EXPECT_NEAR(o->median_s, 0.2, 1e-6);
  EXPECT_EQ(w.describe(*o).rfind("watchdog: rank 3 step 4 in phase backward for 1.6 s; the step has run 2.1 s", 0), 0u)
      << w.describe(*o);
  EXPECT_FALSE(w.check(at(t0, 13))) << "reported once per step";
  w.end_step(at(t0, 13));  // took 3 s: the window is 0.1 0.2 0.3 3, median 0.25, bar 2.5 s
  w.begin_step(5, at(t0, 20));
  EXPECT_FALSE(w.check(at(t0, 22.4)));
  const auto o5 = w.check(at(t0, 22.6));
  ASSERT_TRUE(o5);
  EXPECT_EQ(o5->phase, Phase::data);  // begin_step enters data
  EXPECT_NEAR(o5->median_s, 0.25, 1e-6);
}

TEST(Watchdog, NeverReportsAStepShorterThanMinSeconds) {
  Watchdog w({/*k=*/10, /*min_s=*/1, /*rank=*/0}, nullptr, false);
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 5; ++i) step(w, i + 1, t0, i, i + 0.01);  // median 0.01 s: 10 x median = 0.1 s
  w.begin_step(6, at(t0, 10));
  w.enter(Phase::optimizer, at(t0, 10));
  EXPECT_FALSE(w.check(at(t0, 10.9)));
  const auto o = w.check(at(t0, 11.1));
  ASSERT_TRUE(o);
  EXPECT_EQ(o->phase, Phase::optimizer);
}

// After a rollback the same step number runs again; it is a new step to the watchdog.
TEST(Watchdog, AStepNumberRunAgainIsJudgedAgain) {
  Watchdog w({/*k=*/2, /*min_s=*/0, /*rank=*/0}, nullptr, false);
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 3; ++i) step(w, i + 1, t0, i, i + 1);  // median 1 s, bar 2 s
  w.begin_step(4, at(t0, 10));
  ASSERT_TRUE(w.check(at(t0, 12.5)));
  w.end_step(at(t0, 12.5));
  w.begin_step(4, at(t0, 20));
  const auto o = w.check(at(t0, 23));
  ASSERT_TRUE(o);
  EXPECT_EQ(o->step, 4);
}

// Through pretrain, one process. The model's steps take milliseconds; the stall is 4 s,
// the bar max(5 x median, 2 s): a loaded machine would have to slow the steps 100-fold
// to miss the stall or to report an ordinary step.
namespace {

const std::string kWatched =
    " --model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.vocab_size 101"
    " --model.block_size 32 --train.seq_len 16 --train.micro_batch 2 --train.grad_accum 2"
    " --train.threads 1 --train.warmup 2 --run.save_final false --train.watchdog_min_s 2";
const std::string kOn = " --train.watchdog_k 5";

std::vector<std::string> watchdog_lines(const std::string& output) {
  std::istringstream in(output);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("watchdog:", 0) == 0) out.push_back(line);
  return out;
}

}  // namespace

TEST(WatchdogPretrain, NamesThePhaseAStepStallsIn) {
  for (const char* phase : {"data", "forward", "backward", "communication", "optimizer"}) {
    SCOPED_TRACE(phase);
    const std::string d = fresh_dir(std::string("watchdog_") + phase);
    const auto r = run_pretrain(kWatched + kOn + " --train.steps 8 --debug.slow_step 6 --debug.slow_s 4 --debug.slow_phase " + phase +
                                " --run.dir " + d);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto lines = watchdog_lines(r.output);
    ASSERT_EQ(lines.size(), 1u) << r.output;
    EXPECT_EQ(lines[0].rfind("watchdog: rank 0 step 6 in phase " + std::string(phase) + " for ", 0), 0u) << lines[0];
    EXPECT_EQ(metrics_field(d, "watchdog", "step"), std::vector<std::string>{"6"});
    EXPECT_EQ(metrics_field(d, "watchdog", "phase"), std::vector<std::string>{"\"" + std::string(phase) + "\""});
    EXPECT_EQ(metrics_field(d, "train", "loss").size(), 8u) << "the run went on after the stall";
  }
}

TEST(WatchdogPretrain, SilentWithoutAStallAndWhenOff) {
  std::string d = fresh_dir("watchdog_none");
  auto r = run_pretrain(kWatched + kOn + " --train.steps 20 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(watchdog_lines(r.output).empty()) << r.output;
  EXPECT_TRUE(metrics_field(d, "watchdog", "step").empty());
  d = fresh_dir("watchdog_off");
  r = run_pretrain(kWatched + " --train.steps 8 --train.watchdog_k 0 --debug.slow_step 6 --debug.slow_s 4 --run.dir " + d);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(debug.slow_step)"), std::string::npos) << "the stall happened:\n" << r.output;
  EXPECT_TRUE(watchdog_lines(r.output).empty()) << r.output;
}

TEST(WatchdogPretrain, BadKeys) {
  expect_one_line_error(run_pretrain("--train.watchdog_k 0.5"), "train.watchdog_k");
  expect_one_line_error(run_pretrain("--train.watchdog_min_s -1"), "train.watchdog_min_s");
  expect_one_line_error(run_pretrain("--debug.slow_phase sleep"), "debug.slow_phase");
  expect_one_line_error(run_pretrain("--debug.slow_s -2"), "debug.slow_s");
}
