// SwiGLU on the fused gate/up projection: inp[N, 2F] = (gate | up), out[N, F] =
// silu(gate) * up with silu(g) = g * sigmoid(g) (layout: core/ops.h, swiglu_forward).
#include <cmath>
#include <string>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {
int64_t hidden_of(const Tensor& inp, const Tensor& half, const char* op) {
  const int64_t F = half.dim(-1);
  GPT_CHECK(inp.dim(-1) == 2 * F && inp.numel() == 2 * half.numel(),
            std::string(op) + ": inp " + shape_str(inp.shape) + " is not [N, 2F] for [N, F] = " +
                shape_str(half.shape));
  return F;
}
}  // namespace

void swiglu_forward(Tensor& out, const Tensor& inp) {
  check_f32(inp, "swiglu_forward", "inp");
  const int64_t F = hidden_of(inp, out, "swiglu_forward"), N = out.numel() / F;
  const float* h = inp.f32();
  float* y = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = h + size_t(n) * 2 * F;
    const float* up = gate + F;
    float* yr = y + size_t(n) * F;
    for (int64_t f = 0; f < F; ++f) {
      const float g = gate[f];
      yr[f] = g / (1.f + std::exp(-g)) * up[f];
    }
  }
}

// silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
void swiglu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  check_f32(inp, "swiglu_backward", "inp");
  const int64_t F = hidden_of(inp, dout, "swiglu_backward"), N = dout.numel() / F;
  GPT_CHECK(dinp.numel() == inp.numel(), "swiglu_backward: dinp " + shape_str(dinp.shape) +
                                             " differs from inp " + shape_str(inp.shape));
  const float* h = inp.f32();
  const float* dy = dout.f32();
  float* dh = dinp.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* gate = h + size_t(n) * 2 * F;
    const float* up = gate + F;
    const float* dyr = dy + size_t(n) * F;
    float* dgate = dh + size_t(n) * 2 * F;
    float* dup = dgate + F;
    for (int64_t f = 0; f < F; ++f) {
      const float g = gate[f];
      const float sig = 1.f / (1.f + std::exp(-g));
      dgate[f] = dyr[f] * up[f] * sig * (1.f + g * (1.f - sig));
      dup[f] = dyr[f] * g * sig;
    }
  }
}

}  // namespace gpt::cpu
