// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#include <cmath>

#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu {

static constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)

void gelu_forward(Tensor& out, const Tensor& inp) {
  check_f32(inp, "gelu_forward", "inp");
  const int64_t n = inp.numel();
  const float* x = inp.f32();
  float* y = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    y[i] = 0.5f * v * (1.f + std::tanh(kGeluScale * (v + 0.044715f * v * v * v)));
  }
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const int64_t n = inp.numel();
  const float* x = inp.f32();
  const float* dy = dout.f32();
  float* dx = dinp.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    float u = kGeluScale * (v + 0.044715f * v * v * v);
    float t = std::tanh(u);
    float sech2 = 1.f - t * t;
    float du = kGeluScale * (1.f + 3.f * 0.044715f * v * v);
    dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * sech2 * du);
  }
}

}  // namespace gpt::cpu
