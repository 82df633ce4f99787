#include "parallel/tensor/vocab_parallel.h"

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel {

VocabParallelEmbedding::VocabParallelEmbedding(ParamStore& store, int64_t V, int64_t C, TpRegion& tp,
                                               const std::string& name)
    : TokenEmbedding(store, V, C, ShardSpec{0, tp.size(), tp.rank(), 1, padded_vocab(V, tp.size())}, name),
      tp_(tp),
      vocab_begin_(int64_t(tp.rank()) * (padded_vocab(V, tp.size()) / tp.size())) {}

void VocabParallelEmbedding::forward(Tensor& out, const Tensor& tokens, const Tensor* wpe) {
  // wpe once (rank 0), as a row-parallel bias: the all-reduce sums it from one rank only.
  const Tensor* pos = tp_.rank() == 0 ? wpe : nullptr;
  ops_for(out.device).encoder_slice_forward(out, tokens, weight->compute, pos, vocab_begin_, V_);
  tp_.allreduce(out);  // reduce_from_tp_region
}

void VocabParallelEmbedding::backward(Tensor* dwpe, const Tensor& dout, const Tensor& tokens) {
  Tensor no_positions;  // undefined: the op adds no position gradient
  ops_for(dout.device).encoder_slice_backward(weight->grad, dwpe ? *dwpe : no_positions, dout, tokens,
                                              vocab_begin_);
}

void VocabParallelEmbedding::head_loss(Tensor& losses, Tensor& logits, const Tensor& x,
                                       const Tensor& targets, const float* dloss, Tensor* dx) {
  const Ops& ops = ops_for(x.device);
  const int64_t n = x.dim(0), tp = tp_.size();
  ops.matmul_forward(logits, x, weight->compute, nullptr);
  if (!stats_.defined() || stats_.numel() < tp * 3 * n) stats_ = empty({tp * 3 * n}, DType::F32, x.device);
  Tensor all = stats_.slice(0, {tp, 3, n});
  Tensor mine = stats_.slice(int64_t(tp_.rank()) * 3 * n, {3, n});
  ops.cross_entropy_slice_stats(mine, logits, targets, vocab_begin_, V_);
  tp_.allgather(all);
  if (!dloss) {
    ops.cross_entropy_slice_forward_backward(losses, nullptr, targets, all, vocab_begin_, V_, 0.f);
    return;
  }
  ops.cross_entropy_slice_forward_backward(losses, &logits, targets, all, vocab_begin_, V_, *dloss);
  // This rank's columns' share of dx; head_input_grad_done sums the shares.
  ops.matmul_backward(dx, weight->grad, nullptr, logits, x, weight->compute);
}

// copy_to_tp_region's backward: x was replicated, each rank's dx covers its columns.
void VocabParallelEmbedding::head_input_grad_done(Tensor& dx) { tp_.allreduce(dx); }

std::vector<float> VocabParallelEmbedding::vocabulary_row(const Tensor& row) {
  const int64_t Vs = logit_columns();
  GPT_CHECK(row.numel() == Vs, "VocabParallelEmbedding::vocabulary_row: a row of " +
                                   std::to_string(row.numel()) + " logits, this rank's slice has " +
                                   std::to_string(Vs));
  ensure(row_, {int64_t(tp_.size()) * Vs}, DType::F32, row.device);
  Tensor mine = row_.slice(int64_t(tp_.rank()) * Vs, {Vs});
  ops_for(row.device).convert(mine, row);
  tp_.allgather(row_);
  std::vector<float> whole = to_host_f32(row_);
  whole.resize(size_t(V_));  // the padding's logits (zeros) are no token's
  return whole;
}

}  // namespace gpt::parallel
