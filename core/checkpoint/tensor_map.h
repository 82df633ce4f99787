// Whole (global) tensors on the host by global parameter name: what consolidation
// produces and what the Hugging Face export and import exchange with a checkpoint.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gpt {

struct HostTensor {
  Shape shape;              // the global shape
  std::vector<float> data;  // row-major, numel(shape) elements
};

// Ordered by name, so anything written from it comes out in a stable order.
using TensorMap = std::map<std::string, HostTensor>;

}  // namespace gpt
