#include "core/layers/block.h"

#include <cmath>

#include "core/ops.h"

namespace gpt {

Block::Block(ParamStore& store, const std::string& prefix, const GPTConfig& cfg)
    : n_head(cfg.n_head), ln1(store, prefix + ".ln1", cfg.n_embd), ln2(store, prefix + ".ln2", cfg.n_embd) {
  const int64_t C = cfg.n_embd;
  // GPT-2 scales the init of the two projections that write into the residual stream
  // by 1/sqrt(2L), so the residual's variance does not grow with depth.
  const float proj_std = 0.02f / std::sqrt(2.f * float(cfg.n_layer));
  qkv = std::make_unique<Linear>(store, prefix + ".attn.qkv", C, 3 * C, true, 0.02f);
  attn_proj = std::make_unique<Linear>(store, prefix + ".attn.proj", C, C, true, proj_std);
  fc = std::make_unique<Linear>(store, prefix + ".mlp.fc", C, 4 * C, true, 0.02f);
  mlp_proj = std::make_unique<Linear>(store, prefix + ".mlp.proj", 4 * C, C, true, proj_std);
}

void Block::forward(Tensor& x_out, const Tensor& x_in) {
  const Ops& ops = ops_for(x_in.device);
  const int64_t B = x_in.dim(0), T = x_in.dim(1), C = x_in.dim(2);
  const DType dt = x_in.dtype;
  const Device dev = x_in.device;
  ensure(ln1_out, {B, T, C}, dt, dev);
  ensure(qkv_out, {B, T, qkv->out_features}, dt, dev);
  ensure(atty, {B, T, attn_proj->in_features}, dt, dev);
  ensure(lse, {B, n_head, T}, DType::F32, dev);
  ensure(x2, {B, T, C}, dt, dev);
  ensure(ln2_out, {B, T, C}, dt, dev);
  ensure(fc_out, {B, T, fc->out_features}, dt, dev);
  ensure(gelu_out, {B, T, fc->out_features}, dt, dev);

  ln1.forward(ln1_out, x_in);
  qkv->forward(qkv_out, ln1_out);
  ops.attention_forward(atty, lse, qkv_out, n_head);
  attn_proj->forward(x2, atty);  // x2 = proj(atty) ...
  ops.add(x2, x2, x_in);         // ... + x
  ln2.forward(ln2_out, x2);
  fc->forward(fc_out, ln2_out);
  ops.gelu_forward(gelu_out, fc_out);
  mlp_proj->forward(x_out, gelu_out);
  ops.add(x_out, x_out, x2);
}

static Tensor& zeroed(Tensor& t, const Tensor& like) {
  ensure(t, like.shape, like.dtype, like.device);
  zero_(t);
  return t;
}

void Block::backward(Tensor& dres, const Tensor& x_in, BlockScratch& s) {
  const Ops& ops = ops_for(x_in.device);
  // MLP branch: dres is d(out), which flows unchanged into x2 and into mlp_proj.
  mlp_proj->backward(&zeroed(s.dgelu, gelu_out), dres, gelu_out);
  ops.gelu_backward(zeroed(s.dfch, fc_out), fc_out, s.dgelu);
  fc->backward(&zeroed(s.dln, ln2_out), s.dfch, ln2_out);
  ln2.backward(dres, s.dln, x2);  // dres is now d(x2)
  // Attention branch.
  attn_proj->backward(&zeroed(s.datty, atty), dres, atty);
  ops.attention_backward(zeroed(s.dqkv, qkv_out), s.datty, atty, lse, qkv_out, n_head);
  qkv->backward(&zeroed(s.dln, ln1_out), s.dqkv, ln1_out);
  ln1.backward(dres, s.dln, x_in);  // dres is now d(x_in)
}

}  // namespace gpt
