// Where this rank's training step is: the trainer and the pipeline runner mark each phase
// boundary here. It tells the watchdog (launch/watchdog.h), when train.watchdog_k > 0, and
// applies the debug.slow_* fault: debug.slow_rank sleeps debug.slow_s seconds on entering
// debug.slow_phase of step debug.slow_step, the stall the watchdog tests catch.
#pragma once
#include <cstdint>
#include <memory>

#include "launch/config.h"
#include "launch/metrics_log.h"
#include "launch/watchdog.h"

namespace gpt {

class StepPhases {
 public:
  StepPhases(const TrainConfig& cfg, int rank);
  ~StepPhases();

  // Starts the watchdog's thread (train.watchdog_k > 0). log: rank 0's metrics log or
  // nullptr; it must outlive this object or stop_watchdog().
  void start_watchdog(MetricsLog* log);
  void stop_watchdog();

  void begin_step(int64_t step);  // counted from 1, as logged; enters Phase::data
  void enter(Phase p);
  void end_step();  // a no-op outside a step

 private:
  void maybe_stall(Phase p);

  const TrainConfig& cfg_;
  int rank_;
  Phase slow_phase_;
  int64_t step_ = 0;
  bool stalled_ = false;  // debug.slow_step fires once, also when a rollback repeats the step
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace gpt
