#include "core/ops.h"

#include "core/error.h"

namespace gpt {

const Ops& ops_for(Device device) {
  if (device == Device::CPU) return cpu_ops();
  const Ops* cuda = cuda_ops_or_null();
  GPT_CHECK(cuda != nullptr, "device 'cuda' requested but this build has no usable CUDA backend "
                             "(rebuild with nvcc present, or set device = cpu)");
  return *cuda;
}

bool device_available(Device device) {
  return device == Device::CPU || cuda_ops_or_null() != nullptr;
}

#ifndef GPT_CUDA_BACKEND  // defined by core/cuda when the CUDA backend is built
const Ops* cuda_ops_or_null() { return nullptr; }
#endif

}  // namespace gpt
