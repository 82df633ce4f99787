// One pre-norm LLaMA block (Touvron et al. 2023):
//   h   = x + o_proj(attention(rope(qkv(rmsnorm1(x)))))
//   out = h + down(swiglu(gate_up(rmsnorm2(h))))
// with no biases, grouped-query attention (NKV key/value heads serving NH query heads)
// and gate|up as one GEMM. Like GPT's Block (block.h) it knows shapes, not ranks, and
// keeps what its forward saves for backward in a per-micro-batch LlamaBlockActs.
//
// Dimension letters: B batch, T time, C channels, NH / NKV the query / key-value heads
// this block computes, HS head size, F the SwiGLU width (this rank's share under TP).
// Under sequence parallelism the norms and residual adds run on this rank's rows of the
// residual stream, and the linears give the other side (attention, SwiGLU) all B*T rows
// of this rank's heads and channels, as in GPT's Block.
//
// RoPE rotates the qkv GEMM's output in place: attention and its backward read the
// rotated q and k, and rope_backward needs no input, so nothing unrotated is kept.
//
// Activation recomputation (Recompute, block.h):
//   none       every activation is kept: 3 C + (NH + 2 NKV) HS + NH HS + 3 F per token;
//   selective  the two RMSNorm outputs and the SwiGLU output (2 C + F, cheap to redo)
//              live in buffers shared by all blocks and are recomputed in backward;
//   full       only the block's input is kept (by the model); backward reruns the
//              forward into buffers shared by all blocks.
// Recomputation repeats the same deterministic ops, so gradients are bit-identical.
#pragma once
#include <memory>
#include <string>

#include "core/layers/block.h"
#include "core/layers/linear.h"
#include "core/layers/rmsnorm.h"
#include "core/ops.h"
#include "core/model/gpt_config.h"

namespace gpt {

// Gradient buffers shared by all blocks (only one block runs backward at a time).
struct LlamaBlockScratch {
  Tensor dnorm, dqkv, datty, dgate_up, dswiglu;
};

struct LlamaBlockActs {
  Tensor norm1_out, qkv_out, atty, lse, h, norm2_out, gate_up_out, swiglu_out;
  Tensor rstd1, rstd2;
  Tensor x_out;  // full recomputation only: where the rerun forward writes its output
  // Split backward only: each linear's output gradient, kept from the input-gradient
  // pass for the weight-gradient pass.
  Tensor d_qkv, d_o_proj, d_gate_up, d_down;
  int64_t B = 0, T = 0;  // the micro-batch's shape (x_in may hold only some of its rows)
};

class LlamaBlock {
 public:
  // `shared` holds the buffers every block reuses under selective/full recomputation.
  // `linears` makes the four linears (whole, or this rank's slices under TP); the block
  // runs the heads and SwiGLU channels its slices hold. `layer` (the global index) is
  // unused: the LLaMA block has no MoE MLP yet (GPTConfig::validate refuses one).
  LlamaBlock(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, Recompute mode,
             std::shared_ptr<LlamaBlockActs> shared, const LinearFactory& linears, int layer);
  // x_out, x_in: [B, T, C], or under sequence parallelism this rank's rows of it.
  void forward(LlamaBlockActs& acts, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T);
  // dres holds d(x_out) on entry and d(x_in) on return (updated in place).
  void backward(LlamaBlockActs& acts, Tensor& dres, const Tensor& x_in, LlamaBlockScratch& scratch);
  // The same split in two (zero-bubble pipelines), as Block's: needs Recompute::None.
  void backward_input(LlamaBlockActs& acts, Tensor& dres, const Tensor& x_in, LlamaBlockScratch& scratch);
  void backward_weights(LlamaBlockActs& acts);

  int64_t first_param_offset() const { return norm1.weight->offset; }

  RMSNorm norm1, norm2;
  std::unique_ptr<Linear> qkv, o_proj, gate_up, down;
  RopeArgs rope;  // the local heads and the model's theta; positions from 0

 private:
  struct Refs {  // where each activation lives under this block's recompute mode
    Tensor *norm1_out, *qkv_out, *atty, *lse, *h, *norm2_out, *gate_up_out, *swiglu_out, *rstd1, *rstd2;
  };
  Refs refs(LlamaBlockActs& own) const;
  void run_forward(const Refs& a, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T);
  // The attention branch's backward from d(h) in dres: datty, attention, RoPE; leaves the
  // qkv linear's output gradient in dqkv.
  void attention_backward(const Refs& a, Tensor& dqkv, Tensor& datty, const Tensor& dh);

  Recompute mode_;
  std::shared_ptr<LlamaBlockActs> shared_;
};

}  // namespace gpt
