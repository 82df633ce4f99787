// The step watchdog (train.watchdog_k, train.watchdog_min_s): a background thread that
// notices a training step running far longer than this run's steps usually do and says
// on stderr which rank and which phase of the step it is in. A stalled rank names the
// phase it is stuck in; its peers, waiting for it, name "communication". That line comes
// long before the communicator's hard timeout (parallel.timeout_s), whose message can
// only name the call that waited, and it also covers stalls that never reach a
// collective (a slow disk under the data loader, a stuck device).
//
// The trainer marks phase boundaries with enter(), a handful of atomic stores (a
// sequence lock, so the thread reads a consistent step, phase and start times without
// the trainer ever waiting). The thread wakes a few times per train.watchdog_min_s; once
// kWarmupSteps steps have completed, a step that has run longer than
// max(k x the median of the last kWindow completed steps, min_s) is reported once: a
// line on stderr and, on rank 0 (the only rank with a metrics log), a "watchdog" record
// in metrics.jsonl. Only training steps are watched; validation, checkpoints and the
// sample between them are not.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "launch/metrics_log.h"

namespace gpt {

// The phases of a training step, as the trainer and the pipeline runner mark them.
// communication: waiting for other ranks (the data-parallel gradient reduction and loss
// average, a pipeline stage waiting for its neighbour's activations or gradients);
// optimizer: the gradient norm (an all-reduce of two floats) and the AdamW update.
// Tensor-parallel collectives run inside forward and backward and count there.
enum class Phase : int { idle, data, forward, backward, communication, optimizer };
const char* phase_name(Phase p);
// "data" | "forward" | "backward" | "communication" | "optimizer"; anything else is an
// error naming `key`.
Phase parse_phase(const std::string& name, const std::string& key);

struct WatchdogConfig {
  double k = 10;      // a step longer than k x the median step is overdue
  double min_s = 10;  // ... and longer than this
  int rank = 0;
};

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kWarmupSteps = 3;  // completed steps before any step is judged
  static constexpr int kWindow = 50;      // completed steps the median is taken over

  // What check() found: the running step is overdue.
  struct Overdue {
    int64_t step;
    Phase phase;
    double phase_s, step_s;  // how long the phase and the step have been running
    double median_s;
  };

  // log: rank 0's metrics log, or nullptr; it must outlive the watchdog. start_thread =
  // false leaves checking to the caller (tests call check() with chosen times).
  Watchdog(const WatchdogConfig& cfg, MetricsLog* log, bool start_thread = true);
  ~Watchdog();  // stops and joins the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // The trainer's side, from one thread. step counts from 1, as the log does.
  void begin_step(int64_t step, Clock::time_point now = Clock::now());  // enters Phase::data
  void enter(Phase p, Clock::time_point now = Clock::now());
  // Adds the step's time to the window; a no-op outside a step, so calling it twice is safe.
  void end_step(Clock::time_point now = Clock::now());

  // The running step when it is overdue at `now` and has not been reported yet.
  std::optional<Overdue> check(Clock::time_point now);
  // "watchdog: rank R step S in phase P for X s (...)"
  std::string describe(const Overdue& o) const;

 private:
  void watch();
  int64_t ns(Clock::time_point t) const { return (t - epoch_).count(); }
  // Writer side of the sequence lock: an odd sequence means "being written".
  void begin_write();
  void end_write();

  WatchdogConfig cfg_;
  MetricsLog* log_;
  Clock::time_point epoch_;

  // Published state, written by the trainer's thread under the sequence lock.
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> serial_{0};  // which step this is (step numbers repeat after a rollback)
  std::atomic<int64_t> step_{0};     // 0: between steps
  std::atomic<int> phase_{int(Phase::idle)};
  std::atomic<int64_t> step_start_ns_{0}, phase_start_ns_{0};
  std::atomic<double> median_s_{0};
  std::atomic<int> completed_{0};

  // The trainer's thread only.
  std::deque<double> recent_s_;  // the last kWindow completed steps' times
  uint64_t next_serial_ = 0;

  // The checking side only.
  uint64_t reported_serial_ = 0;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace gpt
