// One pre-LayerNorm transformer block (GPT-2):
//   x2 = x + proj(attention(qkv(ln1(x))));   out = x2 + mlp(ln2(x2))
// mlp is the block's MlpBranch: dense proj(gelu(fc(.))) or, in the blocks the config
// makes MoE, a mixture of experts (core/layers/mlp_branch.h).
// The block knows shapes, not ranks. What its forward saves for backward lives in a
// BlockActs the caller passes in (one per block per micro-batch in flight), so a
// pipeline can keep several micro-batches between their forward and their backward.
//
// Activation recomputation trades compute for memory:
//   none       every activation is kept (15 C floats per token per block);
//   selective  the LayerNorm outputs and the GELU output (6 C, cheap to recompute) live
//              in buffers shared by all blocks and are recomputed in backward;
//   full       only the block's input is kept (by the model); backward reruns the
//              block's forward into buffers shared by all blocks.
// An MoE block keeps everything (Recompute::None only, for now).
// Recomputation repeats the same deterministic ops, so gradients are bit-identical.
#pragma once
#include <memory>
#include <string>

#include "core/layers/linear.h"
#include "core/layers/mlp_branch.h"
#include "core/layers/recompute.h"
#include "core/model/gpt_config.h"

namespace gpt {

// Gradient buffers shared by all blocks (only one block runs backward at a time).
struct BlockScratch {
  Tensor dln, dqkv, datty, dfch;
  MoeScratch moe;
};

struct BlockActs {
  Tensor ln1_out, qkv_out, atty, lse, x2, ln2_out, fc_out, gelu_out;
  LayerNormStats ln1_stats, ln2_stats;
  Tensor x_out;  // full recomputation only: where the rerun forward writes its output
  // Split backward only: each linear's output gradient, kept from the input-gradient
  // pass for the weight-gradient pass (9 C floats per token beside the 15 C above).
  Tensor d_qkv, d_attn_proj, d_fc, d_mlp_proj;
  // An MoE block's routing and expert rows, and the auxiliary losses' gradient scale
  // (the model's loss scale for this micro-batch, set at forward_train).
  MoeActs moe;
  float aux_grad_scale = 0.f;
  int64_t B = 0, T = 0;  // the micro-batch's shape (x_in may hold only some of its rows)
};

class Block {
 public:
  // `shared` holds the buffers every block reuses under selective/full recomputation.
  // `linears` makes the four linears (whole, or this rank's slices under tensor
  // parallelism); the block then runs the heads its qkv slice holds. `layer` (the global
  // index) decides whether the MLP is MoE (GPTConfig::moe_block).
  Block(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, Recompute mode,
        std::shared_ptr<BlockActs> shared, const LinearFactory& linears, int layer);
  // x_out, x_in: the residual stream of a [B, T] micro-batch, [B, T, C], or under
  // sequence parallelism the rows of it this rank holds (LinearFactory::sequence_rows):
  // the norms and residual adds run on those rows, the linears' other side (attention,
  // GELU) on all B*T rows of this rank's heads and channels. `acts` keeps what backward
  // needs (under recomputation only the part that is not recomputed; the rest goes to
  // the shared buffers).
  void forward(BlockActs& acts, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T);
  // dres holds d(x_out) on entry and d(x_in) on return (updated in place); x_in and acts
  // are those of the same micro-batch's forward.
  void backward(BlockActs& acts, Tensor& dres, const Tensor& x_in, BlockScratch& scratch);
  // The same split in two (zero-bubble pipelines): backward_input does everything but
  // the four linears' weight and bias gradients, keeping their output gradients in
  // `acts`; backward_weights adds those gradients later. Needs Recompute::None (the
  // weight pass reads the saved activations, which recomputation would have reused).
  void backward_input(BlockActs& acts, Tensor& dres, const Tensor& x_in, BlockScratch& scratch);
  void backward_weights(BlockActs& acts);

  int64_t first_param_offset() const { return ln1.weight->offset; }

  int n_head;  // the heads this block computes (all of them unless qkv is a slice)
  LayerNorm ln1, ln2;
  std::unique_ptr<Linear> qkv, attn_proj;
  std::unique_ptr<MlpBranch> mlp;

 private:
  // Where each activation lives under this block's recompute mode.
  struct Refs {
    Tensor *ln1_out, *qkv_out, *atty, *lse, *x2, *ln2_out, *fc_out, *gelu_out;
    LayerNormStats *ln1_stats, *ln2_stats;
    MlpSaved mlp;  // fc_out and gelu_out again, and the MoE's (always the micro-batch's own)
  };
  Refs refs(BlockActs& own) const;
  void run_forward(const Refs& a, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T);

  Recompute mode_;
  std::shared_ptr<BlockActs> shared_;
};

}  // namespace gpt
