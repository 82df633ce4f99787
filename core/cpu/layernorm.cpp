// LayerNorm over the last dimension, eps = 1e-5 (GPT-2's), alone or fused with the
// residual add before it.
#include <cmath>
#include <string>

#include "core/bf16.h"
#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {

// One row: mean, then centred variance (two passes), then the normalised output. Both
// forward ops call this one function, and it is never inlined: a single copy of the
// machine code means GCC cannot contract or vectorise it differently in the two
// callers, so the fused op's output has layernorm_forward's bits.
[[gnu::noinline]] void layernorm_row(float* y, float* mean, float* rstd, const float* x,
                                     const float* w, const float* b, int64_t C) {
  float m = 0.f;
  for (int64_t c = 0; c < C; ++c) m += x[c];
  m /= float(C);
  float var = 0.f;
  for (int64_t c = 0; c < C; ++c) {
    float d = x[c] - m;
    var += d * d;
  }
  var /= float(C);
  float s = 1.f / std::sqrt(var + 1e-5f);
  for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * s * w[c] + b[c];
  *mean = m;
  *rstd = s;
}

}  // namespace

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias) {
  check_f32(inp, "layernorm_forward", "inp");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  const float* x = inp.f32();
  const float* w = weight.f32();
  const float* b = bias.f32();
  float* y = out.f32();
  float* mu = mean.f32();
  float* rs = rstd.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    layernorm_row(y + size_t(n) * C, mu + n, rs + n, x + size_t(n) * C, w, b, C);
}

void residual_layernorm_forward(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                const Tensor& a, const Tensor& b, const Tensor& weight,
                                const Tensor& bias, bool round_sum_to_bf16) {
  const char* op = "residual_layernorm_forward";
  check_f32(a, op, "a");
  check_f32(b, op, "b");
  GPT_CHECK(a.numel() == b.numel() && sum.numel() == a.numel() && out.numel() == a.numel(),
            std::string(op) + ": shape mismatch " + shape_str(a.shape) + " + " +
                shape_str(b.shape) + " -> " + shape_str(sum.shape) + ", " + shape_str(out.shape));
  const int64_t C = a.dim(-1), N = a.numel() / C;
  const float* pa = a.f32();
  const float* pb = b.f32();
  const float* w = weight.f32();
  const float* pbias = bias.f32();
  float* s = sum.f32();
  float* y = out.f32();
  float* mu = mean.f32();
  float* rs = rstd.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const size_t row = size_t(n) * C;
    // The add op's sum, rounded as storing it in bf16 would round it: the statistics
    // must see what a separate add would have left in memory.
    for (int64_t c = 0; c < C; ++c) {
      const float v = pa[row + c] + pb[row + c];
      s[row + c] = round_sum_to_bf16 ? bf16_to_float(float_to_bf16(v)) : v;
    }
    layernorm_row(y + row, mu + n, rs + n, s + row, w, pbias, C);
  }
}

void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd) {
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  const float* x = inp.f32();
  const float* dy = dout.f32();
  const float* w = weight.f32();
  const float* mu = mean.f32();
  const float* rs = rstd.f32();
  float* dx = dinp.f32();
  float* dw = dweight.f32();
  float* db = dbias.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + size_t(n) * C;
    const float* dyr = dy + size_t(n) * C;
    float* dxr = dx + size_t(n) * C;
    float dnorm_mean = 0.f, dnorm_norm_mean = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      float xhat = (xr[c] - mu[n]) * rs[n];
      float dnorm = w[c] * dyr[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * xhat;
    }
    dnorm_mean /= float(C);
    dnorm_norm_mean /= float(C);
    for (int64_t c = 0; c < C; ++c) {
      float xhat = (xr[c] - mu[n]) * rs[n];
      float dnorm = w[c] * dyr[c];
      dxr[c] += (dnorm - dnorm_mean - xhat * dnorm_norm_mean) * rs[n];
    }
  }
  // Parameter grads: parallel over channels, rows summed in order (deterministic).
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    float accw[16] = {0}, accb[16] = {0};
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = x + size_t(n) * C;
      const float* dyr = dy + size_t(n) * C;
      for (int64_t c = c0; c < c1; ++c) {
        accw[c - c0] += (xr[c] - mu[n]) * rs[n] * dyr[c];
        accb[c - c0] += dyr[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      dw[c] += accw[c - c0];
      db[c] += accb[c - c0];
    }
  }
}

}  // namespace gpt::cpu
