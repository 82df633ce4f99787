// Residual add, accumulation, scaling, dtype conversion and the squared-norm reduction.
#include <cstring>
#include <vector>

#include "core/bf16.h"
#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  GPT_CHECK(a.numel() == b.numel() && out.numel() == a.numel(), "add: shape mismatch " +
                                                                    shape_str(a.shape) + " + " +
                                                                    shape_str(b.shape));
  const int64_t n = a.numel();
  const float *x = a.f32(), *y = b.f32();
  float* o = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
}

void accumulate(Tensor& dst, const Tensor& src) {
  GPT_CHECK(dst.numel() == src.numel(), "accumulate: shape mismatch " + shape_str(dst.shape) +
                                            " += " + shape_str(src.shape));
  const int64_t n = dst.numel();
  const float* s = src.f32();
  float* d = dst.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

void scale(Tensor& x, float s) {
  const int64_t n = x.numel();
  float* d = x.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] *= s;
}

void convert(Tensor& dst, const Tensor& src) {
  auto is_float_cpu = [](const Tensor& t) {
    return t.device == Device::CPU && (t.dtype == DType::F32 || t.dtype == DType::BF16);
  };
  GPT_CHECK(is_float_cpu(dst) && is_float_cpu(src),
            std::string("convert: expected f32 or bf16 CPU tensors, got ") + dtype_name(src.dtype) +
                " on " + device_name(src.device) + " -> " + dtype_name(dst.dtype) + " on " +
                device_name(dst.device));
  GPT_CHECK(dst.numel() == src.numel(), "convert: shape mismatch " + shape_str(dst.shape) +
                                            " <- " + shape_str(src.shape));
  const int64_t n = src.numel();
  if (dst.dtype == src.dtype) {
    // memmove: a same-dtype convert onto itself (or an overlapping view) stays defined.
    std::memmove(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  // The scalar bf16.h routines are the reference the CUDA kernel is tested against bit
  // for bit; the compiler vectorises these loops well enough for a host-side cast.
  if (dst.dtype == DType::BF16) {
    const float* s = src.f32();
    uint16_t* d = dst.data<uint16_t>();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(s[i]);
  } else {
    const uint16_t* s = src.data<uint16_t>();
    float* d = dst.f32();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i]);
  }
}

double sum_squares(const Tensor& x) {
  check_f32(x, "sum_squares", "x");
  // Fixed chunks summed in a fixed order: the same bits on every run and thread count.
  constexpr int64_t kChunk = 1 << 14;
  const int64_t n = x.numel(), chunks = (n + kChunk - 1) / kChunk;
  const float* p = x.f32();
  std::vector<double> part(size_t(chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double acc = 0.0;
    int64_t end = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
    for (int64_t i = c * kChunk; i < end; ++i) acc += double(p[i]) * p[i];
    part[size_t(c)] = acc;
  }
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

}  // namespace gpt::cpu
