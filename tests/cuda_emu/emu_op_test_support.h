// Shared by the emulator tests of the non-attention kernels (layernorm, cross-entropy,
// elementwise, AdamW, matmul's small kernels): CPU tensors as the kernels' "device"
// memory, the CPU backend (gpt::cpu_ops()) as the reference, and the comparisons.
// Include after the extracted kernels (for AnyFloat).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace emu_test {

using gpt::DType;
using gpt::Shape;
using gpt::Tensor;
using gpt::cuda::bf16;

template <class T> constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>);
  return std::is_same_v<T, float> ? DType::F32 : DType::BF16;
}

// f32 vs the CPU: 1e-5 of max |ref| (summation order differs); bf16: 1e-2.
inline double tolerance(DType dt) { return dt == DType::F32 ? 1e-5 : 1e-2; }

inline std::vector<float> randn(size_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A CPU tensor holding `values` (rounded to bf16 for BF16).
inline Tensor tensor(Shape shape, DType dt, const std::vector<float>& values) {
  Tensor t = gpt::empty(std::move(shape), dt);
  if (size_t(t.numel()) != values.size()) ADD_FAILURE() << "tensor(): size mismatch";
  gpt::from_host_f32(t, values.data());
  return t;
}
inline Tensor clone(const Tensor& t) {
  Tensor c = gpt::empty(t.shape, t.dtype);
  gpt::copy_(c, t);
  return c;
}
inline std::vector<float> host(const Tensor& t) { return gpt::to_host_f32(t); }
inline gpt::cuda::AnyFloat any(const Tensor& t) { return {t.raw(), t.dtype == DType::BF16}; }

// "" when max |got - ref| <= rel * max |ref| (and both have no NaN where the other has
// none), else where and by how much they differ.
inline std::string close_to(const std::vector<float>& got, const std::vector<float>& ref,
                            double rel) {
  if (got.size() != ref.size()) return "sizes differ";
  double ref_max = 0;
  for (float r : ref) ref_max = std::max(ref_max, double(std::fabs(r)));
  const double tol = rel * std::max(ref_max, 1e-30);
  for (size_t i = 0; i < got.size(); ++i) {
    const bool bad = std::isnan(got[i]) != std::isnan(ref[i]) ||
                     (!std::isnan(ref[i]) && std::fabs(double(got[i]) - ref[i]) > tol);
    if (bad) {
      std::ostringstream s;
      s << "element " << i << ": got " << got[i] << ", reference " << ref[i]
        << " (tolerance " << tol << " = " << rel << " x max|ref| " << ref_max << ")";
      return s.str();
    }
  }
  return "";
}
inline std::string close_to(const Tensor& got, const Tensor& ref) {
  return close_to(host(got), host(ref), tolerance(ref.dtype));
}

// "" when the two tensors hold the same bytes.
inline std::string same_bits(const Tensor& a, const Tensor& b) {
  if (a.nbytes() != b.nbytes()) return "sizes differ";
  const size_t es = gpt::dtype_size(a.dtype);
  const auto* pa = static_cast<const unsigned char*>(a.raw());
  const auto* pb = static_cast<const unsigned char*>(b.raw());
  for (size_t i = 0; i < a.nbytes(); i += es)
    if (std::memcmp(pa + i, pb + i, es) != 0)
      return "element " + std::to_string(i / es) + " differs";
  return "";
}

}  // namespace emu_test
