#include "launch/batch_tensors.h"

#include <vector>

#include "core/ops.h"

namespace gpt {

void load_batch(const data::Batch& b, Tensor* inputs, Tensor* targets) {
  std::vector<int32_t> in(size_t(b.B) * b.T), tg(size_t(b.B) * b.T);
  for (int r = 0; r < b.B; ++r)
    for (int t = 0; t < b.T; ++t) {
      in[size_t(r) * b.T + t] = b.tokens[size_t(r) * (b.T + 1) + t];
      tg[size_t(r) * b.T + t] = b.tokens[size_t(r) * (b.T + 1) + t + 1];
    }
  if (inputs) ops_for(inputs->device).copy_from_host(inputs->raw(), in.data(), in.size() * 4);
  if (targets) ops_for(targets->device).copy_from_host(targets->raw(), tg.data(), tg.size() * 4);
}

}  // namespace gpt
