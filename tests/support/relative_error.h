// The error measure every PyTorch comparison uses: the largest absolute difference over
// the largest magnitude of the reference (a scale-free bound that small elements cannot
// inflate); infinite when any difference is not finite (a NaN the op left unwritten).
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace gpt::test {

inline double max_relative_error(const std::vector<float>& ours, const std::vector<float>& reference) {
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < ours.size() && i < reference.size(); ++i) {
    const double d = std::fabs(double(ours[i]) - double(reference[i]));
    diff = std::isfinite(d) ? std::max(diff, d) : std::numeric_limits<double>::infinity();
    scale = std::max(scale, std::fabs(double(reference[i])));
  }
  return diff / scale;
}

}  // namespace gpt::test
