// Which source each global sample comes from: a deterministic schedule computed on the
// fly, with no index file.
//
// Greedy blending (as Megatron does it): global sample n goes to the source that is
// furthest behind its share, argmax_s (w_s * (n + 1) - count_s), ties to the lower
// index. Realised counts then stay within about one sample of w_s * n at every n
// (tests/data checks <= 2 for GPT-3's mixture up to a million samples).
//
// The arithmetic is exact integer arithmetic on weights quantised to 2^-40, so the
// schedule is the same on every machine and compiler; the state is just the counts,
// which the sampler stores in its checkpoint state so resuming never replays history.
#pragma once
#include <cstdint>
#include <vector>

namespace gpt::data {

class MixtureSchedule {
 public:
  // Weights must be finite and > 0; they are normalised by their sum here (callers
  // decide whether a sum other than 1 deserves a warning).
  explicit MixtureSchedule(const std::vector<double>& weights);
  int num_sources() const { return int(quantised_.size()); }
  double weight(int s) const;  // normalised
  // Picks the source of sample n = sum(counts) and increments its count.
  int next(std::vector<int64_t>& counts) const;

 private:
  std::vector<int64_t> quantised_;  // w_s * 2^40, rounded
  int64_t total_ = 0;               // sum of quantised_
};

}  // namespace gpt::data
