#include "parallel/tensor/vocab_parallel.h"

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel {

VocabParallelEmbedding::VocabParallelEmbedding(ParamStore& store, int64_t V, int64_t C, TpRegion& tp,
                                               const std::string& name)
    : TokenEmbedding(store, V, C, ShardSpec{0, tp.size(), tp.rank(), 1, padded_vocab(V, tp.size())}, name),
      tp_(tp),
      vocab_begin_(int64_t(tp.rank()) * (padded_vocab(V, tp.size()) / tp.size())) {}

namespace {
// Whether `t` [rows, C] holds a sequence shard of N rows rather than all of them.
bool is_shard(const Tensor& t, int64_t N, const TpRegion& tp, const char* what) {
  const int64_t rows = t.numel() / t.dim(-1);
  if (rows == N) return false;
  GPT_CHECK(rows * tp.size() == N, std::string("VocabParallelEmbedding: ") + what + " has " + std::to_string(rows) +
                                       " rows, neither all " + std::to_string(N) + " nor a sequence shard of them");
  return true;
}

Shape rows_of(const Tensor& tokens, int64_t C) { return {tokens.dim(0), tokens.dim(1), C}; }
}  // namespace

void VocabParallelEmbedding::forward(Tensor& out, const Tensor& tokens, const Tensor* wpe) {
  // wpe (if any) once (rank 0), as a row-parallel bias: the sum takes it from one rank only.
  const Tensor* pos = tp_.rank() == 0 ? wpe : nullptr;
  const Ops& ops = ops_for(out.device);
  if (!is_shard(out, tokens.numel(), tp_, "the output")) {
    ops.encoder_slice_forward(out, tokens, weight->compute, pos, vocab_begin_, V_);
    tp_.allreduce(out);  // reduce_from_tp_region
    return;
  }
  Tensor all = tp_.scratch(0, rows_of(tokens, out.dim(-1)), out.dtype, out.device);
  ops.encoder_slice_forward(all, tokens, weight->compute, pos, vocab_begin_, V_);
  tp_.reduce_scatter_rows(out, all);  // scatter_to_sequence_region
}

void VocabParallelEmbedding::backward(Tensor* dwpe_or_null, const Tensor& dout, const Tensor& tokens) {
  const Ops& ops = ops_for(dout.device);
  Tensor no_positions;  // undefined: the op adds no position gradient
  Tensor& dwpe = dwpe_or_null ? *dwpe_or_null : no_positions;
  if (!is_shard(dout, tokens.numel(), tp_, "d(output)")) {
    ops.encoder_slice_backward(weight->grad, dwpe, dout, tokens, vocab_begin_);
    return;
  }
  Tensor all = tp_.scratch(0, rows_of(tokens, dout.dim(-1)), dout.dtype, dout.device);
  tp_.gather_rows(all, dout);  // scatter_to_sequence_region, backward
  ops.encoder_slice_backward(weight->grad, dwpe, all, tokens, vocab_begin_);
}

Tensor VocabParallelEmbedding::head_input(const Tensor& x, int64_t N) {
  if (!is_shard(x, N, tp_, "the head's input")) return x;
  Tensor all = tp_.scratch(0, {N, x.dim(-1)}, x.dtype, x.device);
  tp_.gather_rows(all, x);  // gather_from_sequence_region
  return all;
}

Tensor VocabParallelEmbedding::head_input_grad(Tensor& dx, int64_t N) {
  if (!is_shard(dx, N, tp_, "the head's input gradient")) return dx;
  return tp_.scratch(1, {N, dx.dim(-1)}, dx.dtype, dx.device);
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

// copy_to_tp_region's backward: x was replicated, each rank's dx covers its columns;
// or gather_from_sequence_region's: this rank's rows of the sum.
void VocabParallelEmbedding::head_input_grad_done(Tensor& dx, int64_t N) {
  if (!is_shard(dx, N, tp_, "the head's input gradient")) return tp_.allreduce(dx);
  tp_.reduce_scatter_rows(dx, tp_.scratch(1, {N, dx.dim(-1)}, dx.dtype, dx.device));
}

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
