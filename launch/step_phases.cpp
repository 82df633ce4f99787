#include "launch/step_phases.h"

#include <chrono>
#include <cstdio>
#include <thread>

namespace gpt {

StepPhases::StepPhases(const TrainConfig& cfg, int rank)
    : cfg_(cfg), rank_(rank), slow_phase_(parse_phase(cfg.debug_slow_phase, "debug.slow_phase")) {}

StepPhases::~StepPhases() = default;

void StepPhases::start_watchdog(MetricsLog* log) {
  if (cfg_.watchdog_k > 0)
    watchdog_ = std::make_unique<Watchdog>(WatchdogConfig{cfg_.watchdog_k, cfg_.watchdog_min_s, rank_}, log);
}

void StepPhases::stop_watchdog() { watchdog_.reset(); }

void StepPhases::begin_step(int64_t step) {
  step_ = step;
  if (watchdog_) watchdog_->begin_step(step);
  maybe_stall(Phase::data);
}

void StepPhases::enter(Phase p) {
  if (watchdog_) watchdog_->enter(p);
  maybe_stall(p);
}

void StepPhases::end_step() {
  if (watchdog_) watchdog_->end_step();
  step_ = 0;
}

void StepPhases::maybe_stall(Phase p) {
  if (stalled_ || step_ != cfg_.debug_slow_step || rank_ != cfg_.debug_slow_rank || p != slow_phase_) return;
  stalled_ = true;
  std::fprintf(stderr, "rank %d: sleeping %g s on entering phase %s of step %lld (debug.slow_step)\n", rank_,
               cfg_.debug_slow_s, phase_name(p), (long long)step_);
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::duration<double>(cfg_.debug_slow_s));
}

}  // namespace gpt
