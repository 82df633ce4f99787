// The vocabulary-parallel token embedding and tied LM head (Megatron-LM's
// VocabParallelEmbedding and vocab_parallel_cross_entropy): wte [V, C] split by rows over
// the TP group, so no rank holds the whole table and no rank ever makes a row of logits
// over the whole vocabulary.
//
// Rows. Vp = padded_vocab(V, tp) (core/layers/token_embedding.h: every slice a multiple
// of 64 rows); rank r holds rows [r Vp/tp, (r+1) Vp/tp). Rows >= V are padding: a padded
// ShardSpec (core/shard.h), so they start at zero, are not in checkpoints (which keep
// the global [V, C] and read back under any tp), never win the softmax (the ops leave
// them out of max and sum-exp) and get no gradient (zero dlogits, no token maps there).
// Their gradient is zero, so the global grad norm is unchanged.
//
// Embedding, forward: each rank looks up the ids in its rows (zeros for the others)
// and rank 0 adds wpe, then reduce_from_tp_region (all-reduce forward, identity backward).
// Exactly one rank adds a nonzero wte row, so in fp32 the sum is bit-identical to
// wte[id] + wpe[t] of one process. Backward: d(out) is replicated; each rank
// accumulates its rows of dwte and the whole dwpe (replicated, equal on every rank).
//
// Sequence parallelism (tp_regions.h): the embedding's output is this rank's rows of the
// sum, so reduce-scatter instead of all-reduce (scatter_to_sequence_region), and backward
// all-gathers d(out) first; dwpe then comes from all rows, complete and equal on every
// rank as without SP. The head all-gathers its input rows (gather_from_sequence_region)
// and reduce-scatters dx after the last chunk instead of all-reducing it.
//
// Head: its input x (the final LayerNorm's output) is replicated: copy_to_tp_region,
// identity forward and all-reduce of dx backward. Per chunk of n rows:
//   logits [n, Vs] = x wte_slice^T                   (Vs = Vp/tp columns, the slice only)
//   stats [3, n]: per row the slice's max, sum-exp under that max, the target's logit
//   allgather of the stats, [tp, 3, n]; every rank combines them identically into the
//   row's log-sum-exp, hence the same losses on every rank
//   with dloss: dlogits = dloss (softmax slice - onehot on the owning rank), in place;
//   dx_partial = dlogits wte_slice; dwte_slice += dlogits^T x
// and after the last chunk one all-reduce of dx [N, C].
//
// Why an all-gather of the three statistics rather than Megatron's all-reduces (max,
// then sum-exp and the target logit): one collective per chunk instead of two and no
// pass over the logits between them (the sum-exp must be rescaled to the global max,
// which an all-reduce needs before it can sum). The bytes grow as (tp-1) 12 n per rank
// against 2 (tp-1)/tp 4 n C for the dx all-reduce: 3 tp / 2C of it, 1.6% at tp 8 and
// C 768. The traffic test in tests/parallel/tensor_parallel_test.cpp counts both.
#pragma once
#include "core/layers/token_embedding.h"
#include "parallel/tensor/tp_regions.h"

namespace gpt::parallel {

class VocabParallelEmbedding : public TokenEmbedding {
 public:
  VocabParallelEmbedding(ParamStore& store, int64_t V, int64_t C, TpRegion& tp,
                         const std::string& name = "wte");

  void forward(Tensor& out, const Tensor& tokens, const Tensor* wpe) override;
  void backward(Tensor* dwpe, const Tensor& dout, const Tensor& tokens) override;
  void head_loss(Tensor& losses, Tensor& logits, const Tensor& x, const Tensor& targets,
                 const float* dloss, Tensor* dx) override;
  Tensor head_input(const Tensor& x, int64_t N) override;
  Tensor head_input_grad(Tensor& dx, int64_t N) override;
  void head_input_grad_done(Tensor& dx, int64_t N) override;
  // A collective over the TP group: gathers every rank's slice of the row.
  std::vector<float> vocabulary_row(const Tensor& row) override;

  int64_t vocab_begin() const { return vocab_begin_; }  // the first id this rank holds

 private:
  TpRegion& tp_;
  int64_t vocab_begin_;
  Tensor stats_;  // [tp, 3, rows] F32, grown to the largest chunk
  Tensor row_;    // [Vp] F32: one gathered row of logits (vocabulary_row)
};

}  // namespace gpt::parallel
