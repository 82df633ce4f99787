// Tensor-parallel linears and the plan that puts them into a model (Shoeybi et al. 2019).
// The model asks its LinearFactory for each linear; TensorParallelPlan answers:
//   attn_qkv   column-parallel by whole heads: rank r holds heads [r NH/tp, (r+1) NH/tp)
//              of q, of k and of v (a 3-block shard of the packed [3C, C] weight);
//   attn_proj  row-parallel over the same heads' channels;
//   mlp_fc     column-parallel, rows [r 4C/tp, (r+1) 4C/tp);
//   mlp_proj   row-parallel over those channels;
//   mlp_gate_up (LLaMA) column-parallel in 2 blocks: rank r holds rows [r F/tp, (r+1) F/tp)
//              of the gate and the same rows of up, so SwiGLU pairs them locally;
//   mlp_down   (LLaMA) row-parallel over those channels;
//   attn_qkv_grouped (LLaMA with NKV < NH) not split yet: refused by name.
// So attention and GELU stay local, and each block needs one all-reduce forward (after
// each row-parallel linear) and one backward (before each column-parallel linear's input
// gradient leaves it). A row-parallel bias is added once: rank 0 of the group adds it
// to its partial product before the sum. Every rank holds the whole bias and computes
// its whole gradient, which is the same on every rank (it only needs d(out), which is
// replicated), so the replicas stay equal. The plan also splits the token embedding and
// the LM head tied to it by vocabulary rows (VocabParallelEmbedding, vocab_parallel.h).
#pragma once
#include "core/layers/linear.h"
#include "parallel/tensor/tp_regions.h"

namespace gpt::parallel {

class ColumnParallelLinear : public Linear {
 public:
  // blocks: equal blocks of the output dimension split together (3 for a packed q|k|v).
  ColumnParallelLinear(ParamStore& store, const std::string& name, int64_t in, int64_t out,
                       bool bias, float init_std, TpRegion& tp, int blocks = 1);
  void backward(Tensor* dinp, const Tensor& dout, const Tensor& inp) override;
  void input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp) override;

 private:
  TpRegion& tp_;
};

class RowParallelLinear : public Linear {
 public:
  RowParallelLinear(ParamStore& store, const std::string& name, int64_t in, int64_t out,
                    bool bias, float init_std, TpRegion& tp);
  void forward(Tensor& out, const Tensor& inp) override;

 private:
  TpRegion& tp_;
};

class TensorParallelPlan : public LinearFactory {
 public:
  explicit TensorParallelPlan(TpRegion& tp) : tp_(tp) {}
  std::unique_ptr<Linear> make(ParamStore& store, const std::string& name, int64_t in,
                               int64_t out, bool bias, float init_std,
                               LinearRole role) const override;
  // wte and the tied head split by vocabulary rows (vocab_parallel.h).
  std::unique_ptr<TokenEmbedding> make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                       const std::string& name = "wte") const override;

 private:
  TpRegion& tp_;
};

}  // namespace gpt::parallel
