// Tensor-parallel linears and the plan that puts them into a model (Shoeybi et al. 2019).
// The model asks its LinearFactory for each linear; TensorParallelPlan answers:
//   attn_qkv   column-parallel by whole heads: rank r holds heads [r NH/tp, (r+1) NH/tp)
//              of q, and of k and of v theirs (a 3-block shard of the packed [3C, C]
//              weight; under grouped-query attention heads [r NKV/tp, (r+1) NKV/tp) of
//              k and v, so each rank's query heads keep their own kv heads);
//   attn_proj  row-parallel over the same heads' channels;
//   mlp_fc     column-parallel, rows [r 4C/tp, (r+1) 4C/tp);
//   mlp_proj   row-parallel over those channels;
//   mlp_gate_up (LLaMA) column-parallel in 2 blocks: rank r holds rows [r F/tp, (r+1) F/tp)
//              of the gate and the same rows of up, so SwiGLU pairs them locally;
//   mlp_down   (LLaMA) row-parallel over those channels;
// So attention and GELU stay local, and each block needs one all-reduce forward (after
// each row-parallel linear) and one backward (before each column-parallel linear's input
// gradient leaves it). A row-parallel bias is added once: rank 0 of the group adds it
// to its partial product before the sum. Every rank holds the whole bias and computes
// its whole gradient, which is the same on every rank (it only needs d(out), which is
// replicated), so the replicas stay equal. The plan also splits the token embedding and
// the LM head tied to it by vocabulary rows (VocabParallelEmbedding, vocab_parallel.h).
//
// Sequence parallelism (tp_regions.h) changes only where the rows live: a column-parallel
// linear's input and a row-parallel linear's output are this rank's N/tp rows of the
// residual stream, the other side all N rows of this rank's channels. The linear tells
// which from the shapes it is given (rows of input vs output), so the same object runs
// a sequence-sharded training step and the sampler's whole-rows forward.
//   column, forward   all-gather the input rows, then the product;
//   column, backward  all-gather the input rows again (Korthikanti et al. 2022, 4.2.3:
//                     the block keeps only its shard of the LayerNorm output, so that
//                     activation too divides by tp), dW from them; d(input) over all rows,
//                     reduce-scattered to this rank's rows;
//   row, forward      the partial product over all rows (+ bias on rank 0), reduce-scattered;
//   row, backward     all-gather d(out) rows, then the usual backward: dW, the bias's
//                     gradient (from all rows: complete and equal on every rank) and
//                     d(input) for this rank's channels.
// The all-gathered tensors are scratch of the TpRegion, used only inside the call.
#pragma once
#include <vector>

#include "core/layers/linear.h"
#include "parallel/tensor/tp_regions.h"

namespace gpt::parallel {

class ColumnParallelLinear : public Linear {
 public:
  // out_blocks: the packed tensors of the output dimension, each split alike (linear.h).
  ColumnParallelLinear(ParamStore& store, const std::string& name, int64_t in, int64_t out,
                       bool bias, float init_std, TpRegion& tp, const OutBlocks& out_blocks = {});
  void forward(Tensor& out, const Tensor& inp) override;
  void backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) override;
  void input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) override;
  void weight_grad(const Tensor& dout, const Tensor& inp) override;

 private:
  // inp's rows from every rank when inp is a sequence shard of `rows` rows, else inp.
  Tensor gathered(const Tensor& inp, int64_t rows);
  // The product's input gradient over all rows into dinp: the sum over the group of
  // each rank's part, reduce-scattered when dinp is a sequence shard.
  template <class F> void input_grad_into(Tensor& dinp, int64_t rows, F&& compute);
  TpRegion& tp_;
};

class RowParallelLinear : public Linear {
 public:
  RowParallelLinear(ParamStore& store, const std::string& name, int64_t in, int64_t out,
                    bool bias, float init_std, TpRegion& tp);
  void forward(Tensor& out, const Tensor& inp) override;
  void backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) override;
  void backward_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                             const Tensor& pre) override;
  void input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) override;
  void input_grad_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                               const Tensor& pre) override;
  void weight_grad(const Tensor& dout, const Tensor& inp) override;

 private:
  Tensor gathered(const Tensor& dout, int64_t rows);  // d(out)'s rows from every rank
  TpRegion& tp_;
};

class TensorParallelPlan : public LinearFactory {
 public:
  explicit TensorParallelPlan(TpRegion& tp) : tp_(tp) {}
  std::unique_ptr<Linear> make(ParamStore& store, const std::string& name, int64_t in,
                               int64_t out, bool bias, float init_std, LinearRole role,
                               const OutBlocks& out_blocks) const override;
  // wte and the tied head split by vocabulary rows (vocab_parallel.h).
  std::unique_ptr<TokenEmbedding> make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                       const std::string& name = "wte") const override;
  int64_t sequence_rows(int64_t N) const override { return tp_.sequence_rows(N); }
  // Remembers the norms' parameters: under sequence parallelism their gradients are
  // partial sums over this rank's rows (NormGradSum, sequence_grads.h, completes them).
  void add_norm_params(Param* weight, Param* bias) const override;
  const std::vector<Param*>& norm_params() const { return norm_params_; }

 private:
  TpRegion& tp_;
  mutable std::vector<Param*> norm_params_;
};

}  // namespace gpt::parallel
