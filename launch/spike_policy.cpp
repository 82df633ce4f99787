#include "launch/spike_policy.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace gpt {

SpikePolicy parse_spike_policy(const std::string& name) {
  if (name == "stop") return SpikePolicy::stop;
  if (name == "skip") return SpikePolicy::skip;
  if (name == "rollback") return SpikePolicy::rollback;
  fail("config key 'train.on_spike' must be stop, skip or rollback, got '" + name + "'");
}

const char* spike_policy_name(SpikePolicy p) {
  switch (p) {
    case SpikePolicy::stop: return "stop";
    case SpikePolicy::skip: return "skip";
    case SpikePolicy::rollback: return "rollback";
  }
  return "?";
}

SpikeDetector::SpikeDetector(double zscore, int window) : zscore_(zscore), window_(size_t(window > 0 ? window : 1)) {}

bool SpikeDetector::is_spike(double loss, double* z) const {
  *z = 0;
  if (!std::isfinite(loss)) {
    *z = std::numeric_limits<double>::infinity();
    return true;
  }
  constexpr size_t kMinHistory = 8;
  if (zscore_ <= 0 || history_.size() < kMinHistory) return false;
  double mean = 0, var = 0;
  for (double l : history_) mean += l;
  mean /= double(history_.size());
  for (double l : history_) var += (l - mean) * (l - mean);
  const double sd = std::sqrt(var / double(history_.size() - 1));
  // A flat history (sd 0) makes any rise infinitely unlikely; require a real rise.
  *z = sd > 0 ? (loss - mean) / sd : (loss > mean ? std::numeric_limits<double>::infinity() : 0.0);
  return *z > zscore_;
}

void SpikeDetector::accept(double loss) {
  history_.push_back(loss);
  if (history_.size() > window_) history_.pop_front();
}

}  // namespace gpt
