#include "core/layers/mlp_branch.h"

#include <cmath>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

MlpBranch::MlpBranch(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, int layer,
                     const LinearFactory& linears) {
  const int64_t C = cfg.n_embd;
  // GPT-2 scales the init of the projections that write into the residual stream by
  // 1/sqrt(2L), so the residual's variance does not grow with depth; experts alike.
  const float proj_std = 0.02f / std::sqrt(2.f * float(cfg.n_layer));
  if (cfg.moe_block(layer)) {
    moe = std::make_unique<MoeLayer>(store, prefix + ".moe", C, cfg.moe_layer(), 0.02f, proj_std,
                                     linears.expert_exchange());
    return;
  }
  fc = linears.make(store, prefix + ".mlp.fc", C, 4 * C, true, 0.02f, LinearRole::mlp_fc, {});
  proj = linears.make(store, prefix + ".mlp.proj", 4 * C, C, true, proj_std, LinearRole::mlp_proj, {});
}

void MlpBranch::forward(const MlpSaved& a, Tensor& out, const Tensor& x, int64_t B, int64_t T) {
  if (moe) {
    moe->forward(*a.moe, out, x, T);
    return;
  }
  ensure(*a.fc_out, {B, T, fc->out_features}, x.dtype, x.device);
  ensure(*a.gelu_out, {B, T, fc->out_features}, x.dtype, x.device);
  fc->forward(*a.fc_out, x);
  ops_for(x.device).gelu_forward(*a.gelu_out, *a.fc_out);
  proj->forward(out, *a.gelu_out);
}

void MlpBranch::recompute(const MlpSaved& a) {
  GPT_CHECK(!moe, "MoE blocks keep every activation: train.recompute must be none with moe.experts > 0");
  ops_for(a.fc_out->device).gelu_forward(*a.gelu_out, *a.fc_out);
}

// A scratch gradient shaped like `like` (not zeroed: the ops writing it overwrite it).
static Tensor& sized(Tensor& t, const Tensor& like) {
  ensure(t, like.shape, like.dtype, like.device);
  return t;
}

void MlpBranch::backward(const MlpSaved& a, Tensor& dx, const Tensor& dout, const Tensor& x, Tensor& dpre,
                         MoeScratch& moe_scratch) {
  if (moe) {
    moe->backward(*a.moe, dx, dout, x, a.aux_grad_scale, moe_scratch);
    return;
  }
  proj->backward_through_gelu(sized(dpre, *a.fc_out), dout, *a.gelu_out, *a.fc_out);
  fc->backward(&dx, dpre, x);
}

void MlpBranch::input_grad(const MlpSaved& a, Tensor& dx, const Tensor& dout, const Tensor& x, Tensor& d_fc,
                           MoeScratch& moe_scratch) {
  if (moe) {
    moe->backward(*a.moe, dx, dout, x, a.aux_grad_scale, moe_scratch);
    return;
  }
  proj->input_grad_through_gelu(sized(d_fc, *a.fc_out), dout, *a.gelu_out, *a.fc_out);
  fc->input_grad(dx, d_fc, x);
}

void MlpBranch::weight_grad(const MlpSaved& a, const Tensor& d_proj_out, const Tensor& d_fc, const Tensor& x) {
  if (moe) return;  // input_grad did them
  proj->weight_grad(d_proj_out, *a.gelu_out);
  fc->weight_grad(d_fc, x);
}

}  // namespace gpt
