#include "launch/watchdog.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/error.h"

namespace gpt {

namespace {
constexpr const char* kPhaseNames[] = {"idle", "data", "forward", "backward", "communication", "optimizer"};
}  // namespace

const char* phase_name(Phase p) { return kPhaseNames[int(p)]; }

Phase parse_phase(const std::string& name, const std::string& key) {
  for (int p = int(Phase::data); p <= int(Phase::optimizer); ++p)
    if (name == kPhaseNames[p]) return Phase(p);
  fail("config key '" + key + "' must be data, forward, backward, communication or optimizer, got '" + name + "'");
}

Watchdog::Watchdog(const WatchdogConfig& cfg, MetricsLog* log, bool start_thread)
    : cfg_(cfg), log_(log), epoch_(Clock::now()) {
  if (start_thread) thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// The sequence lock (Boehm's pattern): the data stores are relaxed and fenced between
// the two sequence stores; a reader that sees the same even sequence before and after
// its loads has read one consistent state.
void Watchdog::begin_write() {
  seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

void Watchdog::end_write() { seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

void Watchdog::begin_step(int64_t step, Clock::time_point now) {
  begin_write();
  serial_.store(++next_serial_, std::memory_order_relaxed);
  step_.store(step, std::memory_order_relaxed);
  step_start_ns_.store(ns(now), std::memory_order_relaxed);
  phase_.store(int(Phase::data), std::memory_order_relaxed);
  phase_start_ns_.store(ns(now), std::memory_order_relaxed);
  end_write();
}

void Watchdog::enter(Phase p, Clock::time_point now) {
  if (step_.load(std::memory_order_relaxed) == 0) return;  // between steps nothing is watched
  begin_write();
  phase_.store(int(p), std::memory_order_relaxed);
  phase_start_ns_.store(ns(now), std::memory_order_relaxed);
  end_write();
}

void Watchdog::end_step(Clock::time_point now) {
  if (step_.load(std::memory_order_relaxed) == 0) return;
  const double took = double(ns(now) - step_start_ns_.load(std::memory_order_relaxed)) * 1e-9;
  recent_s_.push_back(took);
  if (recent_s_.size() > size_t(kWindow)) recent_s_.pop_front();
  std::vector<double> sorted(recent_s_.begin(), recent_s_.end());
  const size_t mid = sorted.size() / 2;
  std::nth_element(sorted.begin(), sorted.begin() + long(mid), sorted.end());
  double median = sorted[mid];
  if (sorted.size() % 2 == 0) median = (median + *std::max_element(sorted.begin(), sorted.begin() + long(mid))) / 2;
  begin_write();
  step_.store(0, std::memory_order_relaxed);
  phase_.store(int(Phase::idle), std::memory_order_relaxed);
  median_s_.store(median, std::memory_order_relaxed);
  completed_.store(completed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  end_write();
}

std::optional<Watchdog::Overdue> Watchdog::check(Clock::time_point now) {
  const uint64_t before = seq_.load(std::memory_order_acquire);
  if (before % 2) return std::nullopt;  // being written: look again at the next wake
  const uint64_t serial = serial_.load(std::memory_order_relaxed);
  const int64_t step = step_.load(std::memory_order_relaxed);
  const Phase phase = Phase(phase_.load(std::memory_order_relaxed));
  const int64_t step_start = step_start_ns_.load(std::memory_order_relaxed);
  const int64_t phase_start = phase_start_ns_.load(std::memory_order_relaxed);
  const double median = median_s_.load(std::memory_order_relaxed);
  const int completed = completed_.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seq_.load(std::memory_order_relaxed) != before) return std::nullopt;

  if (step == 0 || completed < kWarmupSteps || serial == reported_serial_) return std::nullopt;
  const double step_s = double(ns(now) - step_start) * 1e-9;
  if (step_s <= std::max(cfg_.k * median, cfg_.min_s)) return std::nullopt;
  reported_serial_ = serial;
  return Overdue{step, phase, double(ns(now) - phase_start) * 1e-9, step_s, median};
}

std::string Watchdog::describe(const Overdue& o) const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "watchdog: rank %d step %lld in phase %s for %.1f s; the step has run %.1f s "
                "(median step %.3g s, train.watchdog_k %g, train.watchdog_min_s %g)",
                cfg_.rank, (long long)o.step, phase_name(o.phase), o.phase_s, o.step_s, o.median_s, cfg_.k,
                cfg_.min_s);
  return buf;
}

void Watchdog::watch() {
  // A few looks per min_s, so a report comes at most a quarter of it late; never more
  // often than every 50 ms nor less than every 0.5 s.
  const auto period = std::chrono::duration<double>(std::clamp(cfg_.min_s / 4, 0.05, 0.5));
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, period, [&] { return stop_; })) {
    const std::optional<Overdue> o = check(Clock::now());
    if (!o) continue;
    std::fprintf(stderr, "%s\n", describe(*o).c_str());
    std::fflush(stderr);
    // MetricsLog::write is one fputs per line, which stdio locks, so this line never
    // interleaves with the trainer's.
    if (log_)
      log_->write("watchdog", MetricsLog::Line()
                                  .num("rank", cfg_.rank)
                                  .num("step", double(o->step))
                                  .str("phase", phase_name(o->phase))
                                  .num("phase_s", o->phase_s)
                                  .num("step_s", o->step_s)
                                  .num("median_step_s", o->median_s)
                                  .num("k", cfg_.k));
  }
}

}  // namespace gpt
