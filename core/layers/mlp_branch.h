// The MLP half of a GPT-2 block, dense or mixture-of-experts, as one piece the block
// holds, so the block's code is the same for both:
//   dense  out = proj(gelu(fc(x)))   fc [4C, C], proj [C, 4C] (whole, or this rank's slices
//                                    under tensor parallelism: the LinearFactory decides)
//   MoE    out = MoeLayer(x)         core/layers/moe.h, in the blocks GPTConfig::moe_block names
// x is ln2's output; the block adds the residual. Dense runs exactly the ops the block ran
// before the MoE option existed, in the same order, so its numbers did not change.
#pragma once
#include <memory>
#include <string>

#include "core/layers/linear.h"
#include "core/layers/moe.h"
#include "core/model/gpt_config.h"

namespace gpt {

// Where one micro-batch's MLP activations live (the block's recompute mode decides: its
// own BlockActs or the buffers every block shares).
struct MlpSaved {
  Tensor* fc_out;    // dense [B, T, 4C]: fc's output (GELU's input)
  Tensor* gelu_out;  // dense [B, T, 4C]
  MoeActs* moe;      // MoE: routing and the experts' rows
  float aux_grad_scale;  // MoE: the auxiliary losses' gradient scale, set by the model at forward
};

class MlpBranch {
 public:
  // Registers "<prefix>.mlp.fc" and ".mlp.proj" (dense) or "<prefix>.moe.*" (MoE).
  MlpBranch(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, int layer,
            const LinearFactory& linears);

  bool is_moe() const { return moe != nullptr; }
  // out = mlp(x), x and out [B, T, C] (MoE: whole rows only).
  void forward(const MlpSaved& a, Tensor& out, const Tensor& x, int64_t B, int64_t T);
  // Selective recomputation: rebuild what the shared buffers lost (dense: the GELU output).
  void recompute(const MlpSaved& a);
  // dx OVERWRITTEN with d(x) (a scratch gradient, as matmul_backward's dinp); parameter
  // gradients accumulate. dpre: dense scratch for d(fc_out).
  void backward(const MlpSaved& a, Tensor& dx, const Tensor& dout, const Tensor& x, Tensor& dpre,
                MoeScratch& moe_scratch);
  // The split backward (zero-bubble pipelines). Dense: input_grad keeps fc's output
  // gradient in d_fc for weight_grad, which also needs proj's (dout) kept by the caller.
  // MoE: input_grad is the whole backward, the experts' and router's weight gradients
  // included (the expert GEMMs are not split yet), and weight_grad has nothing left to do;
  // the gradients are the same, the MoE blocks just do not fill the bubble.
  void input_grad(const MlpSaved& a, Tensor& dx, const Tensor& dout, const Tensor& x, Tensor& d_fc,
                  MoeScratch& moe_scratch);
  void weight_grad(const MlpSaved& a, const Tensor& d_proj_out, const Tensor& d_fc, const Tensor& x);

  std::unique_ptr<Linear> fc, proj;  // dense
  std::unique_ptr<MoeLayer> moe;     // MoE
};

}  // namespace gpt
