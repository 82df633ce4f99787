// One pre-LayerNorm transformer block (GPT-2):
//   x2 = x + proj(attention(qkv(ln1(x))));   out = x2 + mlp_proj(gelu(fc(ln2(x2))))
// The block owns the activations it saves for backward; it knows shapes, not ranks.
#pragma once
#include <memory>
#include <string>

#include "core/layers/linear.h"
#include "core/model/gpt_config.h"

namespace gpt {

// Gradient buffers shared by all blocks (only one block runs backward at a time).
struct BlockScratch {
  Tensor dln, dqkv, datty, dfch, dgelu;
};

class Block {
 public:
  Block(ParamStore& store, const std::string& prefix, const GPTConfig& cfg);
  // x_out, x_in: [B, T, C].
  void forward(Tensor& x_out, const Tensor& x_in);
  // dres holds d(x_out) on entry and d(x_in) on return (updated in place).
  void backward(Tensor& dres, const Tensor& x_in, BlockScratch& scratch);

  int n_head;
  LayerNorm ln1, ln2;
  std::unique_ptr<Linear> qkv, attn_proj, fc, mlp_proj;
  // Saved activations.
  Tensor ln1_out, qkv_out, atty, lse, x2, ln2_out, fc_out, gelu_out;
};

}  // namespace gpt
