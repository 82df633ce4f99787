// RMSNorm over the last dimension (LLaMA's), alone or fused with the residual add before
// it: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps). No bias, no mean subtracted.
#include <cmath>
#include <string>

#include "core/bf16.h"
#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {

// One row. Both forward ops call this one never-inlined copy, so the fused op's output
// has rmsnorm_forward's bits (see layernorm.cpp's layernorm_row for why).
[[gnu::noinline]] void rmsnorm_row(float* y, float* rstd, const float* x, const float* w,
                                   int64_t C, float eps) {
  float ss = 0.f;
  for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
  const float s = 1.f / std::sqrt(ss / float(C) + eps);
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * s * w[c];
  *rstd = s;
}

void check_rows(const Tensor& t, int64_t n, const char* op, const char* arg) {
  GPT_CHECK(t.numel() == n, std::string(op) + ": '" + arg + "' " + shape_str(t.shape) + " has " +
                                std::to_string(t.numel()) + " elements, expected " +
                                std::to_string(n));
}

}  // namespace

void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps) {
  const char* op = "rmsnorm_forward";
  check_f32(inp, op, "inp");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_rows(out, N * C, op, "out");
  check_rows(rstd, N, op, "rstd");
  check_rows(weight, C, op, "weight");
  const float* x = inp.f32();
  const float* w = weight.f32();
  float* y = out.f32();
  float* rs = rstd.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    rmsnorm_row(y + size_t(n) * C, rs + n, x + size_t(n) * C, w, C, eps);
}

void residual_rmsnorm_forward(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a,
                              const Tensor& b, const Tensor& weight, float eps,
                              bool round_sum_to_bf16) {
  const char* op = "residual_rmsnorm_forward";
  check_f32(a, op, "a");
  check_f32(b, op, "b");
  const int64_t C = a.dim(-1), N = a.numel() / C;
  check_rows(b, N * C, op, "b");
  check_rows(sum, N * C, op, "sum");
  check_rows(out, N * C, op, "out");
  check_rows(rstd, N, op, "rstd");
  check_rows(weight, C, op, "weight");
  const float* pa = a.f32();
  const float* pb = b.f32();
  const float* w = weight.f32();
  float* s = sum.f32();
  float* y = out.f32();
  float* rs = rstd.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const size_t row = size_t(n) * C;
    // Rounded as the add op would store it: the statistics see what memory holds.
    for (int64_t c = 0; c < C; ++c) {
      const float v = pa[row + c] + pb[row + c];
      s[row + c] = round_sum_to_bf16 ? bf16_to_float(float_to_bf16(v)) : v;
    }
    rmsnorm_row(y + row, rs + n, s + row, w, C, eps);
  }
}

// With xhat = x * rstd and g = w * dout: dx = rstd * (g - xhat * mean(g * xhat)),
// dw = sum over rows of dout * xhat.
void rmsnorm_backward(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_rows(dinp, N * C, op, "dinp");
  check_rows(dout, N * C, op, "dout");
  check_rows(rstd, N, op, "rstd");
  check_rows(weight, C, op, "weight");
  check_rows(dweight, C, op, "dweight");
  const float* x = inp.f32();
  const float* dy = dout.f32();
  const float* w = weight.f32();
  const float* rs = rstd.f32();
  float* dx = dinp.f32();
  float* dw = dweight.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + size_t(n) * C;
    const float* dyr = dy + size_t(n) * C;
    float* dxr = dx + size_t(n) * C;
    float g_xhat_mean = 0.f;
    for (int64_t c = 0; c < C; ++c) g_xhat_mean += w[c] * dyr[c] * (xr[c] * rs[n]);
    g_xhat_mean /= float(C);
    for (int64_t c = 0; c < C; ++c)
      dxr[c] += (w[c] * dyr[c] - xr[c] * rs[n] * g_xhat_mean) * rs[n];
  }
  // Parameter grad: parallel over channels, rows summed in order (deterministic).
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    float acc[16] = {0};
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = x + size_t(n) * C;
      const float* dyr = dy + size_t(n) * C;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += xr[c] * rs[n] * dyr[c];
    }
    for (int64_t c = c0; c < c1; ++c) dw[c] += acc[c - c0];
  }
}

}  // namespace gpt::cpu
