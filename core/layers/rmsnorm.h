// RMSNorm (Zhang & Sennrich 2019), the LLaMA family's norm: out = x / rms(x) * weight,
// no bias, no mean subtracted. Its forward saves rstd [N] per row for the backward; like
// LayerNormStats it belongs to one micro-batch's activations, not to the layer.
#pragma once
#include <string>

#include "core/param_store.h"

namespace gpt {

class RMSNorm {
 public:
  // weight [C] "<name>.weight", starting at 1 (no weight decay).
  RMSNorm(ParamStore& store, const std::string& name, int64_t C, float eps);
  // rstd: [N] F32, sized here.
  void forward(Tensor& out, Tensor& rstd, const Tensor& inp);
  // sum = a + b (the residual add), then out = rmsnorm(sum), in one pass; backward is
  // backward(dinp, dout, sum, rstd). sum may alias a or b.
  void forward_residual(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a, const Tensor& b);
  // dinp += d(inp) (the residual stream accumulates), weight->grad += d(weight).
  void backward(Tensor& dinp, const Tensor& dout, const Tensor& inp, const Tensor& rstd);

  Param* weight;
  float eps;
};

}  // namespace gpt
