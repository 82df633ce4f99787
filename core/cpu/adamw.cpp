// AdamW with decoupled weight decay, in the same operation order as torch.optim.AdamW
// (decay first, then the bias-corrected Adam step) so the two agree to fp32 rounding.
#include <cmath>

#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu {

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& a) {
  check_f32(param, "adamw_update", "param");
  const int64_t n = param.numel();
  float* p = param.f32();
  const float* g = grad.f32();
  float* mm = m.f32();
  float* vv = v.f32();
  const float bc1 = 1.f - std::pow(a.beta1, float(a.step));
  const float bc2_sqrt = std::sqrt(1.f - std::pow(a.beta2, float(a.step)));
  const float step_size = a.lr / bc1;
  const float decay = 1.f - a.lr * a.weight_decay;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    float mi = a.beta1 * mm[i] + (1.f - a.beta1) * gi;
    float vi = a.beta2 * vv[i] + (1.f - a.beta2) * gi * gi;
    mm[i] = mi;
    vv[i] = vi;
    float denom = std::sqrt(vi) / bc2_sqrt + a.eps;
    p[i] = p[i] * decay - step_size * mi / denom;
  }
}

}  // namespace gpt::cpu
