#include "parallel/tensor/tp_regions.h"

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel {

void TpRegion::allreduce(Tensor& t) {
  if (tp_.size() == 1) return;
  if (t.dtype == DType::BF16 && comm_.device() == Device::CPU) {
    ensure(f32_, {t.numel()}, DType::F32, t.device);
    const Ops& ops = ops_for(t.device);
    ops.convert(f32_, t.view({t.numel()}));
    comm_.allreduce(f32_, tp_).wait();
    Tensor flat = t.view({t.numel()});
    ops.convert(flat, f32_);
    return;
  }
  comm_.allreduce(t, tp_).wait();
}

void TpRegion::allgather(Tensor& buf) {
  if (tp_.size() == 1) return;
  GPT_CHECK(buf.numel() % tp_.size() == 0, "TpRegion::allgather: " + std::to_string(buf.numel()) +
                                               " elements do not split into " + std::to_string(tp_.size()) + " chunks");
  const std::vector<int64_t> counts(size_t(tp_.size()), buf.numel() / tp_.size());
  comm_.allgather(buf, counts, tp_).wait();
}

}  // namespace gpt::parallel
