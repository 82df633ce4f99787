// The final parameters of two pretrain runs compared through their checkpoints: read
// back whole (gathered from whatever TP/PP/DP layout wrote them) and measured as one
// relative L2 distance. Shared by the layout-equality tests of every parallelism.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/checkpoint/sharded_checkpoint.h"

namespace gpt::test {

// ||a - b|| / ||b|| over every parameter of the two runs' checkpoints at `ckpt`
// (a checkpoint directory's name inside each run directory).
inline double parameter_distance(const std::string& run_a, const std::string& run_b,
                                 const std::string& ckpt = "ckpt_00000010") {
  const gpt::TensorMap a = gpt::read_global_params(run_a + "/" + ckpt);
  const gpt::TensorMap b = gpt::read_global_params(run_b + "/" + ckpt);
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (const auto& [name, t] : b) {
    auto it = a.find(name);
    if (it == a.end()) {
      ADD_FAILURE() << "parameter " << name << " missing";
      continue;
    }
    EXPECT_EQ(it->second.shape, t.shape) << name;
    for (size_t i = 0; i < t.data.size() && i < it->second.data.size(); ++i) {
      const double d = double(it->second.data[i]) - double(t.data[i]);
      diff += d * d;
      norm += double(t.data[i]) * double(t.data[i]);
    }
  }
  return std::sqrt(diff / norm);
}

}  // namespace gpt::test
