// One pre-LayerNorm transformer block (GPT-2):
//   x2 = x + proj(attention(qkv(ln1(x))));   out = x2 + mlp_proj(gelu(fc(ln2(x2))))
// The block owns the activations it saves for backward; it knows shapes, not ranks.
//
// Activation recomputation trades compute for memory:
//   none       every activation is kept (15 C floats per token per block);
//   selective  the LayerNorm outputs and the GELU output (6 C, cheap to recompute) live
//              in buffers shared by all blocks and are recomputed in backward;
//   full       only the block's input is kept (by the model); backward reruns the
//              block's forward into buffers shared by all blocks.
// Recomputation repeats the same deterministic ops, so gradients are bit-identical.
#pragma once
#include <memory>
#include <string>

#include "core/layers/linear.h"
#include "core/model/gpt_config.h"

namespace gpt {

enum class Recompute { None, Selective, Full };
Recompute parse_recompute(const std::string& name);  // "none" | "selective" | "full"

// Gradient buffers shared by all blocks (only one block runs backward at a time).
struct BlockScratch {
  Tensor dln, dqkv, datty, dfch;
};

struct BlockActs {
  Tensor ln1_out, qkv_out, atty, lse, x2, ln2_out, fc_out, gelu_out;
  Tensor x_out;  // full recomputation only: where the rerun forward writes its output
};

class Block {
 public:
  // `shared` holds the buffers every block reuses under selective/full recomputation.
  Block(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, Recompute mode,
        std::shared_ptr<BlockActs> shared);
  // x_out, x_in: [B, T, C].
  void forward(Tensor& x_out, const Tensor& x_in);
  // dres holds d(x_out) on entry and d(x_in) on return (updated in place).
  void backward(Tensor& dres, const Tensor& x_in, BlockScratch& scratch);

  int n_head;
  LayerNorm ln1, ln2;
  std::unique_ptr<Linear> qkv, attn_proj, fc, mlp_proj;

 private:
  // Where each activation lives under this block's recompute mode.
  struct Refs {
    Tensor *ln1_out, *qkv_out, *atty, *lse, *x2, *ln2_out, *fc_out, *gelu_out;
  };
  void run_forward(Tensor& x_out, const Tensor& x_in);

  Recompute mode_;
  BlockActs own_;
  std::shared_ptr<BlockActs> shared_;
  Refs a_;
};

}  // namespace gpt
