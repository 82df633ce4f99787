#include "parallel/tensor/tp_regions.h"

#include <chrono>

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel {

namespace {
// Adds the wall time of its scope to `ms` (TpRegion::comm_ms).
struct ScopedMs {
  double& ms;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~ScopedMs() { ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); }
};
}  // namespace

void TpRegion::allreduce(Tensor& t) {
  if (tp_.size() == 1) return;
  ScopedMs timer{comm_ms_};
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
  ScopedMs timer{comm_ms_};
  const std::vector<int64_t> counts(size_t(tp_.size()), buf.numel() / tp_.size());
  comm_.allgather(buf, counts, tp_).wait();
}

void TpRegion::gather_rows(Tensor& full, const Tensor& shard) {
  const int64_t n = shard.numel();
  GPT_CHECK(full.numel() == n * tp_.size() && full.dtype == shard.dtype,
            "TpRegion::gather_rows: a shard of " + std::to_string(n) + " elements does not fill " +
                std::to_string(full.numel()) + " over " + std::to_string(tp_.size()) + " ranks");
  Tensor mine = full.view({full.numel()}).slice(int64_t(tp_.rank) * n, {n});
  copy_(mine, shard.view({n}));
  allgather(full);
}

void TpRegion::reduce_scatter_rows(Tensor& shard, const Tensor& full) {
  const int64_t n = shard.numel();
  GPT_CHECK(full.numel() == n * tp_.size() && full.dtype == shard.dtype,
            "TpRegion::reduce_scatter_rows: " + std::to_string(full.numel()) + " elements do not scatter into " +
                std::to_string(tp_.size()) + " shards of " + std::to_string(n));
  ScopedMs timer{comm_ms_};
  const std::vector<int64_t> counts(size_t(tp_.size()), n);
  Tensor out = shard.view({n});
  if (full.dtype == DType::BF16 && comm_.device() == Device::CPU) {
    const Ops& ops = ops_for(full.device);
    ensure(f32_, {full.numel()}, DType::F32, full.device);
    ensure(f32_out_, {n}, DType::F32, full.device);
    ops.convert(f32_, full.view({full.numel()}));
    comm_.reduce_scatter(f32_, f32_out_, counts, tp_).wait();
    ops.convert(out, f32_out_);
    return;
  }
  comm_.reduce_scatter(full.view({full.numel()}), out, counts, tp_).wait();
}

Tensor TpRegion::scratch(int slot, const Shape& shape, DType dtype, Device device) {
  GPT_CHECK(slot == 0 || slot == 1, "TpRegion::scratch: slot " + std::to_string(slot));
  Tensor& s = scratch_[slot];
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  // Grown, never shrunk: the largest micro-batch sets it once.
  if (!s.defined() || s.numel() < numel || s.dtype != dtype || s.device != device) s = empty({numel}, dtype, device);
  return s.slice(0, shape);
}

}  // namespace gpt::parallel
