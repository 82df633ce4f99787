// Softmax cross-entropy over the vocabulary. The fused form turns each row of logits
// into its gradient in place right after its loss, so no probability matrix is ever
// stored beside the logits.
// Compiled with -ffast-math (see core/CMakeLists.txt) so the exp loops vectorise.
#include <cmath>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

static float row_logsumexp(const float* z, int64_t V) {
  float mx = z[0];
#pragma omp simd reduction(max : mx)
  for (int64_t v = 0; v < V; ++v) mx = z[v] > mx ? z[v] : mx;
  // exp into a small buffer, then sum: GCC vectorises the exp loop (libmvec) only
  // when it is not also a reduction.
  float buf[512];
  float sum = 0.f;
  for (int64_t v0 = 0; v0 < V; v0 += 512) {
    const int64_t n = V - v0 < 512 ? V - v0 : 512;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) buf[i] = std::exp(z[v0 + i] - mx);
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += buf[i];
  }
  return mx + std::log(sum);
}

static void check_targets(const Tensor& targets, int64_t V) {
  const int32_t* t = targets.i32();
  for (int64_t n = 0; n < targets.numel(); ++n)
    if (t[n] >= V)
      fail("target token id " + std::to_string(t[n]) + " at position " + std::to_string(n) +
           " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets) {
  check_f32(logits, "cross_entropy_forward", "logits");
  const int64_t V = logits.dim(-1), N = logits.numel() / V;
  check_targets(targets, V);
  const float* z = logits.f32();
  const int32_t* t = targets.i32();
  float* l = losses.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* zr = z + size_t(n) * V;
    l[n] = t[n] < 0 ? 0.f : row_logsumexp(zr, V) - zr[t[n]];
  }
}

void cross_entropy_forward_backward(Tensor& losses, Tensor& logits, const Tensor& targets,
                                    float dloss) {
  check_f32(logits, "cross_entropy_forward_backward", "logits");
  const int64_t V = logits.dim(-1), N = logits.numel() / V;
  check_targets(targets, V);
  float* z = logits.f32();
  const int32_t* t = targets.i32();
  float* l = losses.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* zr = z + size_t(n) * V;
    if (t[n] < 0) {
      l[n] = 0.f;
      for (int64_t v = 0; v < V; ++v) zr[v] = 0.f;
      continue;
    }
    const float lse = row_logsumexp(zr, V);
    l[n] = lse - zr[t[n]];
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) zr[v] = dloss * std::exp(zr[v] - lse);
    zr[t[n]] -= dloss;
  }
}

}  // namespace gpt::cpu
