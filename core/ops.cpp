#include "core/ops.h"

#include "core/error.h"
#include "core/op_profile.h"

namespace gpt {

static const Ops& backend_ops(Device device) {
  if (device == Device::CPU) return cpu_ops();
  const Ops* cuda = cuda_ops_or_null();
  GPT_CHECK(cuda != nullptr, "device 'cuda' requested but this build has no usable CUDA backend "
                             "(rebuild with nvcc present, or set device = cpu)");
  return *cuda;
}

const Ops& ops_for(Device device) {
  const Ops& ops = backend_ops(device);
  return op_profiling() ? profiled_ops(ops) : ops;
}

bool device_available(Device device) {
  return device == Device::CPU || cuda_ops_or_null() != nullptr;
}

#ifndef GPT_CUDA_BACKEND  // defined by core/cuda when the CUDA backend is built
const Ops* cuda_ops_or_null() { return nullptr; }
#endif

}  // namespace gpt
