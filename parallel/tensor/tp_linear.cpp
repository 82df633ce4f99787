#include "parallel/tensor/tp_linear.h"

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tensor/vocab_parallel.h"

namespace gpt::parallel {
namespace {

int64_t rows_of(const Tensor& t) { return t.numel() / t.dim(-1); }

// Whether `local` (rows of the residual-stream side) is a sequence shard of `rows`.
bool sharded(int64_t local, int64_t rows, const TpRegion& tp, const char* who) {
  if (local == rows) return false;
  GPT_CHECK(local * tp.size() == rows, std::string(who) + ": " + std::to_string(local) +
                                           " rows are neither all " + std::to_string(rows) +
                                           " nor a sequence shard of them over " + std::to_string(tp.size()) + " ranks");
  return true;
}

}  // namespace

ColumnParallelLinear::ColumnParallelLinear(ParamStore& store, const std::string& name, int64_t in,
                                           int64_t out, bool bias, float init_std, TpRegion& tp,
                                           const OutBlocks& out_blocks)
    : Linear(store, name, in, out, bias, init_std,
             packed_split(0, tp.size(), tp.rank(), out_blocks.empty() ? OutBlocks{out} : out_blocks),
             packed_split(0, tp.size(), tp.rank(), out_blocks.empty() ? OutBlocks{out} : out_blocks)),
      tp_(tp) {}

Tensor ColumnParallelLinear::gathered(const Tensor& inp, int64_t rows) {
  if (!sharded(rows_of(inp), rows, tp_, "ColumnParallelLinear input")) return inp;
  Tensor full = tp_.scratch(0, {rows, in_features}, inp.dtype, inp.device);
  tp_.gather_rows(full, inp);  // gather_from_sequence_region, forward
  return full;
}

// The input was replicated (copy_to_tp_region's identity forward) or gathered, so each
// rank holds one part of its gradient: the sum over the group is the whole (all-reduce),
// or this rank's rows of it (reduce-scatter, gather_from_sequence_region's backward).
template <class F>
void ColumnParallelLinear::input_grad_into(Tensor& dinp, int64_t rows, F&& compute) {
  if (!sharded(rows_of(dinp), rows, tp_, "ColumnParallelLinear input gradient")) {
    compute(dinp);
    tp_.allreduce(dinp);
    return;
  }
  Tensor full = tp_.scratch(1, {rows, in_features}, dinp.dtype, dinp.device);
  compute(full);
  tp_.reduce_scatter_rows(dinp, full);
}

void ColumnParallelLinear::forward(Tensor& out, const Tensor& inp) {
  Linear::forward(out, gathered(inp, rows_of(out)));
}

void ColumnParallelLinear::backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) {
  const Tensor x = gathered(inp, rows_of(dout));
  if (!dinp) return Linear::backward(nullptr, dout, x);
  input_grad_into(*dinp, rows_of(dout), [&](Tensor& d) { Linear::backward(&d, dout, x); });
}

void ColumnParallelLinear::input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  // The input gradient needs only the weight, not the input's rows: no gather. The op
  // reads the input's shape (all rows) only, which is d's.
  input_grad_into(dinp, rows_of(dout), [&](Tensor& d) { Linear::input_grad(d, dout, d); });
}

void ColumnParallelLinear::weight_grad(const Tensor& dout, const Tensor& inp) {
  Linear::weight_grad(dout, gathered(inp, rows_of(dout)));
}

RowParallelLinear::RowParallelLinear(ParamStore& store, const std::string& name, int64_t in,
                                     int64_t out, bool bias, float init_std, TpRegion& tp)
    : Linear(store, name, in, out, bias, init_std, ShardSpec{1, tp.size(), tp.rank(), 1}, ShardSpec{}),
      tp_(tp) {}

Tensor RowParallelLinear::gathered(const Tensor& dout, int64_t rows) {
  if (!sharded(rows_of(dout), rows, tp_, "RowParallelLinear output gradient")) return dout;
  Tensor full = tp_.scratch(0, {rows, out_features}, dout.dtype, dout.device);
  tp_.gather_rows(full, dout);  // scatter_to_sequence_region, backward
  return full;
}

// Each rank multiplies its slice of the input channels: partial sums over all rows, then
// reduce_from_tp_region (all-reduce) or scatter_to_sequence_region (reduce-scatter).
// Backward needs nothing extra beyond the gather: d(out) of all rows is then replicated,
// and dinp = d(out) W_slice is exactly this rank's slice of the input gradient.
void RowParallelLinear::forward(Tensor& out, const Tensor& inp) {
  const Tensor* b = bias && tp_.rank() == 0 ? &bias->compute : nullptr;
  const Ops& ops = ops_for(inp.device);
  if (!sharded(rows_of(out), rows_of(inp), tp_, "RowParallelLinear output")) {
    ops.matmul_forward(out, inp, weight->compute, b);
    tp_.allreduce(out);
    return;
  }
  Tensor partial = tp_.scratch(0, {rows_of(inp), out_features}, out.dtype, out.device);
  ops.matmul_forward(partial, inp, weight->compute, b);
  tp_.reduce_scatter_rows(out, partial);
}

void RowParallelLinear::backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) {
  Linear::backward(dinp, gathered(dout, rows_of(inp)), inp);
}

void RowParallelLinear::backward_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                                              const Tensor& pre) {
  Linear::backward_through_gelu(dpre, gathered(dout, rows_of(inp)), inp, pre);
}

void RowParallelLinear::input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) {
  Linear::input_grad(dinp, gathered(dout, rows_of(inp)), inp);
}

void RowParallelLinear::input_grad_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                                                const Tensor& pre) {
  Linear::input_grad_through_gelu(dpre, gathered(dout, rows_of(inp)), inp, pre);
}

void RowParallelLinear::weight_grad(const Tensor& dout, const Tensor& inp) {
  Linear::weight_grad(gathered(dout, rows_of(inp)), inp);
}

std::unique_ptr<Linear> TensorParallelPlan::make(ParamStore& store, const std::string& name,
                                                 int64_t in, int64_t out, bool bias,
                                                 float init_std, LinearRole role,
                                                 const OutBlocks& out_blocks) const {
  switch (role) {
    case LinearRole::attn_qkv:     // each rank's q heads with their kv heads: attention stays local
    case LinearRole::mlp_fc:
    case LinearRole::mlp_gate_up:  // each rank's gate and up rows together: SwiGLU stays local
      return std::make_unique<ColumnParallelLinear>(store, name, in, out, bias, init_std, tp_, out_blocks);
    case LinearRole::attn_proj:
    case LinearRole::mlp_proj:
    case LinearRole::mlp_down:
      return std::make_unique<RowParallelLinear>(store, name, in, out, bias, init_std, tp_);
  }
  fail("TensorParallelPlan: unknown linear role for '" + name + "'");
}

std::unique_ptr<TokenEmbedding> TensorParallelPlan::make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                                         const std::string& name) const {
  return std::make_unique<VocabParallelEmbedding>(store, V, C, tp_, name);
}

void TensorParallelPlan::add_norm_params(Param* weight, Param* bias) const {
  for (Param* p : {weight, bias})
    if (p) norm_params_.push_back(p);
}

}  // namespace gpt::parallel
