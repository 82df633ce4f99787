#include "data/mixture_schedule.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace gpt::data {

MixtureSchedule::MixtureSchedule(const std::vector<double>& weights) {
  if (weights.empty()) throw std::runtime_error("mixture: no sources");
  double sum = 0;
  for (size_t s = 0; s < weights.size(); ++s) {
    if (!std::isfinite(weights[s]) || weights[s] <= 0)
      throw std::runtime_error("mixture: weight of source " + std::to_string(s) +
                               " must be finite and > 0, got " + std::to_string(weights[s]));
    sum += weights[s];
  }
  for (double w : weights) {
    // 2^40 resolution: a weight error of 1e-12 drifts by one sample per 10^12 samples.
    int64_t q = std::llround(w / sum * 1099511627776.0);
    if (q <= 0) throw std::runtime_error("mixture: a weight is too small relative to the others");
    quantised_.push_back(q);
    total_ += q;
  }
}

double MixtureSchedule::weight(int s) const { return double(quantised_[size_t(s)]) / double(total_); }

int MixtureSchedule::next(std::vector<int64_t>& counts) const {
  // __int128: q (2^40) times a sample index up to 2^63 must not overflow.
  __int128 n = 0;
  for (int64_t c : counts) n += c;
  int best = 0;
  __int128 best_deficit = 0;
  for (size_t s = 0; s < quantised_.size(); ++s) {
    // deficit = (w_s (n+1) - count_s) scaled by total_: how far behind its share s is.
    __int128 deficit = __int128(quantised_[s]) * (n + 1) - __int128(counts[s]) * total_;
    if (s == 0 || deficit > best_deficit) best = int(s), best_deficit = deficit;
  }
  ++counts[size_t(best)];
  return best;
}

}  // namespace gpt::data
