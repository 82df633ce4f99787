// LayerNorm over the last dimension, eps = 1e-5 (GPT-2's).
#include <cmath>

#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu {

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
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x + size_t(n) * C;
    float m = 0.f;
    for (int64_t c = 0; c < C; ++c) m += xr[c];
    m /= float(C);
    float var = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      float d = xr[c] - m;
      var += d * d;
    }
    var /= float(C);
    float s = 1.f / std::sqrt(var + 1e-5f);
    float* yr = y + size_t(n) * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * s * w[c] + b[c];
    mu[n] = m;
    rs[n] = s;
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
