#include "core/layers/linear.h"

#include "core/ops.h"

namespace gpt {

Linear::Linear(ParamStore& store, const std::string& name, int64_t in, int64_t out, bool has_bias,
               float init_std)
    : Linear(store, name, in, out, has_bias, init_std, ShardSpec{}, ShardSpec{}) {}

Linear::Linear(ParamStore& store, const std::string& name, int64_t in, int64_t out, bool has_bias,
               float init_std, ShardSpec weight_shard, ShardSpec bias_shard) {
  weight = store.add(name + ".weight", {out, in}, /*decay=*/true, init_std, 0.f, weight_shard);
  bias = has_bias ? store.add(name + ".bias", {out}, /*decay=*/false, 0.f, 0.f, bias_shard) : nullptr;
  out_features = weight->shape[0];
  in_features = weight->shape[1];
}

std::unique_ptr<Linear> LinearFactory::make(ParamStore& store, const std::string& name, int64_t in,
                                            int64_t out, bool bias, float init_std, LinearRole,
                                            const OutBlocks&) const {
  return std::make_unique<Linear>(store, name, in, out, bias, init_std);
}

std::unique_ptr<TokenEmbedding> LinearFactory::make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                                    const std::string& name) const {
  return std::make_unique<TokenEmbedding>(store, V, C, name);
}

void Linear::forward(Tensor& out, const Tensor& inp) {
  ops_for(inp.device).matmul_forward(out, inp, weight->compute, bias ? &bias->compute : nullptr);
}

void Linear::backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) {
  ops_for(inp.device).matmul_backward(dinp, weight->grad, bias ? &bias->grad : nullptr, dout, inp,
                                      weight->compute);
}

void Linear::backward_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                                  const Tensor& pre) {
  ops_for(inp.device).matmul_gelu_backward(dpre, weight->grad, bias ? &bias->grad : nullptr, dout,
                                           inp, weight->compute, pre);
}

void Linear::input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  Tensor no_weight_grad;
  ops_for(inp.device).matmul_backward(&dinp, no_weight_grad, nullptr, dout, inp, weight->compute);
}

void Linear::input_grad_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp, const Tensor& pre) {
  Tensor no_weight_grad;
  ops_for(inp.device).matmul_gelu_backward(dpre, no_weight_grad, nullptr, dout, inp, weight->compute, pre);
}

void Linear::weight_grad(const Tensor& dout, const Tensor& inp) {
  ops_for(inp.device).matmul_backward(nullptr, weight->grad, bias ? &bias->grad : nullptr, dout, inp,
                                      weight->compute);
}

LayerNorm::LayerNorm(ParamStore& store, const std::string& name, int64_t C) {
  weight = store.add(name + ".weight", {C}, /*decay=*/false, 0.f, 1.f);
  bias = store.add(name + ".bias", {C}, /*decay=*/false, 0.f, 0.f);
}

static void size_stats(LayerNormStats& s, const Tensor& inp) {
  const int64_t N = inp.numel() / inp.dim(-1);
  ensure(s.mean, {N}, DType::F32, inp.device);
  ensure(s.rstd, {N}, DType::F32, inp.device);
}

void LayerNorm::forward(Tensor& out, LayerNormStats& stats, const Tensor& inp) {
  size_stats(stats, inp);
  ops_for(inp.device).layernorm_forward(out, stats.mean, stats.rstd, inp, weight->compute, bias->compute);
}

void LayerNorm::forward_residual(Tensor& sum, Tensor& out, LayerNormStats& stats, const Tensor& a,
                                 const Tensor& b) {
  size_stats(stats, a);
  ops_for(a.device).residual_layernorm_forward(sum, out, stats.mean, stats.rstd, a, b,
                                               weight->compute, bias->compute);
}

void LayerNorm::backward(Tensor& dinp, const Tensor& dout, const Tensor& inp,
                         const LayerNormStats& stats) {
  ops_for(inp.device).layernorm_backward(dinp, weight->grad, bias->grad, dout, inp, weight->compute,
                                         stats.mean, stats.rstd);
}

}  // namespace gpt
