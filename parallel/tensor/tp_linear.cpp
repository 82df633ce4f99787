#include "parallel/tensor/tp_linear.h"

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tensor/vocab_parallel.h"

namespace gpt::parallel {

ColumnParallelLinear::ColumnParallelLinear(ParamStore& store, const std::string& name, int64_t in,
                                           int64_t out, bool bias, float init_std, TpRegion& tp,
                                           int blocks)
    : Linear(store, name, in, out, bias, init_std, ShardSpec{0, tp.size(), tp.rank(), blocks},
             ShardSpec{0, tp.size(), tp.rank(), blocks}),
      tp_(tp) {}

// The input was replicated (copy_to_tp_region's identity forward), so each rank holds
// one part of its gradient: the sum over the group is the whole.
void ColumnParallelLinear::backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) {
  Linear::backward(dinp, dout, inp);
  if (dinp) tp_.allreduce(*dinp);
}

void ColumnParallelLinear::input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  Linear::input_grad(dinp, dout, inp);
  tp_.allreduce(dinp);
}

RowParallelLinear::RowParallelLinear(ParamStore& store, const std::string& name, int64_t in,
                                     int64_t out, bool bias, float init_std, TpRegion& tp)
    : Linear(store, name, in, out, bias, init_std, ShardSpec{1, tp.size(), tp.rank(), 1}, ShardSpec{}),
      tp_(tp) {}

// Each rank multiplies its slice of the input channels: partial sums, then
// reduce_from_tp_region. Backward needs nothing extra: d(out) is replicated, and
// dinp = d(out) W_slice is exactly this rank's slice of the input gradient.
void RowParallelLinear::forward(Tensor& out, const Tensor& inp) {
  const Tensor* b = bias && tp_.rank() == 0 ? &bias->compute : nullptr;
  ops_for(inp.device).matmul_forward(out, inp, weight->compute, b);
  tp_.allreduce(out);
}

std::unique_ptr<Linear> TensorParallelPlan::make(ParamStore& store, const std::string& name,
                                                 int64_t in, int64_t out, bool bias,
                                                 float init_std, LinearRole role) const {
  switch (role) {
    case LinearRole::attn_qkv:
      return std::make_unique<ColumnParallelLinear>(store, name, in, out, bias, init_std, tp_, 3);
    case LinearRole::mlp_fc:
      return std::make_unique<ColumnParallelLinear>(store, name, in, out, bias, init_std, tp_, 1);
    case LinearRole::mlp_gate_up:  // each rank's gate and up rows together: SwiGLU stays local
      return std::make_unique<ColumnParallelLinear>(store, name, in, out, bias, init_std, tp_, 2);
    case LinearRole::attn_proj:
    case LinearRole::mlp_proj:
    case LinearRole::mlp_down:
      return std::make_unique<RowParallelLinear>(store, name, in, out, bias, init_std, tp_);
    case LinearRole::attn_qkv_grouped:
      // q, k and v blocks of unequal sizes: a ShardSpec cuts equal blocks only.
      fail("parallel.tp = " + std::to_string(tp_.size()) + " with model.n_kv_head < model.n_head: the tensor-parallel "
           "plan does not split grouped-query qkv yet (set model.n_kv_head = model.n_head, or parallel.tp = 1)");
  }
  fail("TensorParallelPlan: unknown linear role for '" + name + "'");
}

std::unique_ptr<TokenEmbedding> TensorParallelPlan::make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                                         const std::string& name) const {
  return std::make_unique<VocabParallelEmbedding>(store, V, C, tp_, name);
}

}  // namespace gpt::parallel
