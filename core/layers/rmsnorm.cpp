#include "core/layers/rmsnorm.h"

#include "core/ops.h"

namespace gpt {

RMSNorm::RMSNorm(ParamStore& store, const std::string& name, int64_t C, float eps_)
    : weight(store.add(name + ".weight", {C}, /*decay=*/false, 0.f, 1.f)), eps(eps_) {}

static void size_rstd(Tensor& rstd, const Tensor& inp) {
  ensure(rstd, {inp.numel() / inp.dim(-1)}, DType::F32, inp.device);
}

void RMSNorm::forward(Tensor& out, Tensor& rstd, const Tensor& inp) {
  size_rstd(rstd, inp);
  ops_for(inp.device).rmsnorm_forward(out, rstd, inp, weight->compute, eps);
}

void RMSNorm::forward_residual(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a, const Tensor& b) {
  size_rstd(rstd, a);
  ops_for(a.device).residual_rmsnorm_forward(sum, out, rstd, a, b, weight->compute, eps);
}

void RMSNorm::backward(Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& rstd) {
  ops_for(inp.device).rmsnorm_backward(dinp, weight->grad, dout, inp, weight->compute, rstd);
}

}  // namespace gpt
