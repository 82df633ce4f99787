#include "core/layers/llama_block.h"

#include <cmath>

#include "core/error.h"

namespace gpt {

LlamaBlock::LlamaBlock(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, Recompute mode,
                       std::shared_ptr<LlamaBlockActs> shared, const LinearFactory& linears, int /*layer*/)
    : norm1(store, prefix + ".ln1", cfg.n_embd, cfg.norm_eps),
      norm2(store, prefix + ".ln2", cfg.n_embd, cfg.norm_eps),
      mode_(mode),
      shared_(std::move(shared)) {
  const int64_t C = cfg.n_embd, HS = cfg.head_size(), NH = cfg.n_head, NKV = cfg.kv_heads(), F = cfg.ffn();
  // GPT-2's init (block.cpp), for the same reason: the two projections writing into the
  // residual stream start 1/sqrt(2L) smaller.
  const float proj_std = 0.02f / std::sqrt(2.f * float(cfg.n_layer));
  qkv = linears.make(store, prefix + ".attn.qkv", C, (NH + 2 * NKV) * HS, false, 0.02f, LinearRole::attn_qkv,
                     {NH * HS, NKV * HS, NKV * HS});
  o_proj = linears.make(store, prefix + ".attn.proj", NH * HS, C, false, proj_std, LinearRole::attn_proj, {});
  gate_up = linears.make(store, prefix + ".mlp.gate_up", C, 2 * F, false, 0.02f, LinearRole::mlp_gate_up, {F, F});
  down = linears.make(store, prefix + ".mlp.down", F, C, false, proj_std, LinearRole::mlp_down, {});
  // The heads this block computes: all of them, or a tensor-parallel rank's share, which
  // keeps the q : kv ratio (the plan splits q and kv heads alike).
  const int64_t local_heads = qkv->out_features / HS;
  rope = RopeArgs{int(local_heads * NH / (NH + 2 * NKV)), int(local_heads * NKV / (NH + 2 * NKV)), cfg.rope_theta, 0};
  GPT_CHECK(mode == Recompute::None || shared_, "LlamaBlock: recomputation needs shared buffers");
  linears.add_norm_params(norm1.weight, nullptr);
  linears.add_norm_params(norm2.weight, nullptr);
}

LlamaBlock::Refs LlamaBlock::refs(LlamaBlockActs& own) const {
  LlamaBlockActs& s = mode_ == Recompute::None ? own : *shared_;
  LlamaBlockActs& full = mode_ == Recompute::Full ? *shared_ : own;
  // Selective: the norms' outputs and SwiGLU's are shared and recomputed; their small
  // rstd statistics stay per micro-batch (the recomputation rewrites the same values).
  return Refs{&s.norm1_out, &full.qkv_out,  &full.atty,       &full.lse,   &full.h,
              &s.norm2_out, &full.gate_up_out, &s.swiglu_out, &full.rstd1, &full.rstd2};
}

void LlamaBlock::run_forward(const Refs& a, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T) {
  const Ops& ops = ops_for(x_in.device);
  const DType dt = x_in.dtype;
  const Device dev = x_in.device;
  // Norms and residual adds on the rows this model holds; linears give all B*T rows.
  const Shape rows = x_in.shape;
  ensure(*a.norm1_out, rows, dt, dev);
  ensure(*a.qkv_out, {B, T, qkv->out_features}, dt, dev);
  ensure(*a.atty, {B, T, o_proj->in_features}, dt, dev);
  ensure(*a.lse, {B, rope.n_head, T}, DType::F32, dev);
  ensure(*a.h, rows, dt, dev);
  ensure(*a.norm2_out, rows, dt, dev);
  ensure(*a.gate_up_out, {B, T, gate_up->out_features}, dt, dev);
  ensure(*a.swiglu_out, {B, T, down->in_features}, dt, dev);

  norm1.forward(*a.norm1_out, *a.rstd1, x_in);
  qkv->forward(*a.qkv_out, *a.norm1_out);
  ops.rope_forward(*a.qkv_out, *a.qkv_out, rope);  // in place
  ops.attention_gqa_forward(*a.atty, *a.lse, *a.qkv_out, rope.n_head, rope.n_kv_head);
  o_proj->forward(*a.h, *a.atty);  // h = o_proj(atty) ...
  // ... + x, and norm2(h) in the same pass (a recomputed norm2.forward(h) gives its bits).
  norm2.forward_residual(*a.h, *a.norm2_out, *a.rstd2, *a.h, x_in);
  gate_up->forward(*a.gate_up_out, *a.norm2_out);
  ops.swiglu_forward(*a.swiglu_out, *a.gate_up_out);
  down->forward(x_out, *a.swiglu_out);
  ops.add(x_out, x_out, *a.h);
}

void LlamaBlock::forward(LlamaBlockActs& acts, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T) {
  acts.B = B, acts.T = T;
  run_forward(refs(acts), x_out, x_in, B, T);
}

// A scratch gradient shaped like `like`. Not zeroed: the ops writing into these
// (matmul, swiglu, attention and rope backward) overwrite their input gradient.
static Tensor& sized(Tensor& t, const Tensor& like) {
  ensure(t, like.shape, like.dtype, like.device);
  return t;
}

void LlamaBlock::attention_backward(const Refs& a, Tensor& dqkv, Tensor& datty, const Tensor& dh) {
  const Ops& ops = ops_for(dh.device);
  ops.attention_gqa_backward(sized(dqkv, *a.qkv_out), datty, *a.atty, *a.lse, *a.qkv_out, rope.n_head,
                             rope.n_kv_head);
  ops.rope_backward(dqkv, dqkv, rope);  // in place: now d(qkv GEMM output)
}

void LlamaBlock::backward(LlamaBlockActs& acts, Tensor& dres, const Tensor& x_in, LlamaBlockScratch& s) {
  const Ops& ops = ops_for(x_in.device);
  const Refs a = refs(acts);
  if (mode_ == Recompute::Full) {
    ensure(shared_->x_out, x_in.shape, x_in.dtype, x_in.device);
    run_forward(a, shared_->x_out, x_in, acts.B, acts.T);
  } else if (mode_ == Recompute::Selective) {
    norm1.forward(*a.norm1_out, *a.rstd1, x_in);
    norm2.forward(*a.norm2_out, *a.rstd2, *a.h);
    ops.swiglu_forward(*a.swiglu_out, *a.gate_up_out);
  }
  // MLP branch: dres is d(out), which flows unchanged into h and into down.
  down->backward(&sized(s.dswiglu, *a.swiglu_out), dres, *a.swiglu_out);
  ops.swiglu_backward(sized(s.dgate_up, *a.gate_up_out), *a.gate_up_out, s.dswiglu);
  gate_up->backward(&sized(s.dnorm, *a.norm2_out), s.dgate_up, *a.norm2_out);
  norm2.backward(dres, s.dnorm, *a.h, *a.rstd2);  // dres is now d(h)
  // Attention branch.
  o_proj->backward(&sized(s.datty, *a.atty), dres, *a.atty);
  attention_backward(a, s.dqkv, s.datty, dres);
  qkv->backward(&sized(s.dnorm, *a.norm1_out), s.dqkv, *a.norm1_out);
  norm1.backward(dres, s.dnorm, x_in, *a.rstd1);  // dres is now d(x_in)
}

void LlamaBlock::backward_input(LlamaBlockActs& acts, Tensor& dres, const Tensor& x_in, LlamaBlockScratch& s) {
  GPT_CHECK(mode_ == Recompute::None, "a split backward (parallel.schedule = zb-h1) needs train.recompute = none");
  const Ops& ops = ops_for(x_in.device);
  const Refs a = refs(acts);
  // The linears' output gradients land in (or are copied to) the micro-batch's own
  // buffers, which the weight pass reads; dres itself keeps changing.
  ensure(acts.d_down, dres.shape, dres.dtype, dres.device);
  copy_(acts.d_down, dres);
  down->input_grad(sized(s.dswiglu, acts.swiglu_out), dres, acts.swiglu_out);
  ops.swiglu_backward(sized(acts.d_gate_up, acts.gate_up_out), acts.gate_up_out, s.dswiglu);
  gate_up->input_grad(sized(s.dnorm, acts.norm2_out), acts.d_gate_up, acts.norm2_out);
  norm2.backward(dres, s.dnorm, acts.h, acts.rstd2);  // dres is now d(h)
  ensure(acts.d_o_proj, dres.shape, dres.dtype, dres.device);
  copy_(acts.d_o_proj, dres);
  o_proj->input_grad(sized(s.datty, acts.atty), dres, acts.atty);
  attention_backward(a, acts.d_qkv, s.datty, dres);
  qkv->input_grad(sized(s.dnorm, acts.norm1_out), acts.d_qkv, acts.norm1_out);
  norm1.backward(dres, s.dnorm, x_in, acts.rstd1);  // dres is now d(x_in)
}

void LlamaBlock::backward_weights(LlamaBlockActs& a) {
  down->weight_grad(a.d_down, a.swiglu_out);
  gate_up->weight_grad(a.d_gate_up, a.norm2_out);
  o_proj->weight_grad(a.d_o_proj, a.atty);
  qkv->weight_grad(a.d_qkv, a.norm1_out);
}

}  // namespace gpt
