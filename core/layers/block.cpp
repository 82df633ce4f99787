#include "core/layers/block.h"

#include <cmath>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

Block::Block(ParamStore& store, const std::string& prefix, const GPTConfig& cfg, Recompute mode,
             std::shared_ptr<BlockActs> shared, const LinearFactory& linears, int layer)
    : ln1(store, prefix + ".ln1", cfg.n_embd),
      ln2(store, prefix + ".ln2", cfg.n_embd),
      mode_(mode),
      shared_(std::move(shared)) {
  const int64_t C = cfg.n_embd;
  // GPT-2 scales the init of the two projections that write into the residual stream
  // by 1/sqrt(2L), so the residual's variance does not grow with depth.
  const float proj_std = 0.02f / std::sqrt(2.f * float(cfg.n_layer));
  qkv = linears.make(store, prefix + ".attn.qkv", C, 3 * C, true, 0.02f, LinearRole::attn_qkv, {C, C, C});
  attn_proj = linears.make(store, prefix + ".attn.proj", C, C, true, proj_std, LinearRole::attn_proj, {});
  mlp = std::make_unique<MlpBranch>(store, prefix, cfg, layer, linears);
  const int64_t head_size = C / cfg.n_head;
  n_head = int(qkv->out_features / (3 * head_size));

  linears.add_norm_params(ln1.weight, ln1.bias);
  linears.add_norm_params(ln2.weight, ln2.bias);
  GPT_CHECK(mode == Recompute::None || shared_, "Block: recomputation needs shared buffers");
  GPT_CHECK(mode == Recompute::None || !mlp->is_moe(),
            "config key 'train.recompute' must be none with moe.experts > 0 (MoE blocks keep every activation)");
}

Block::Refs Block::refs(BlockActs& own) const {
  BlockActs& s = mode_ == Recompute::None ? own : *shared_;
  BlockActs& full = mode_ == Recompute::Full ? *shared_ : own;
  // Under selective recomputation only the cheap-to-rebuild activations are shared; the
  // LayerNorm statistics are recomputed with them but small, so they stay per micro-batch.
  return Refs{&s.ln1_out,       &full.qkv_out,   &full.atty,
              &full.lse,        &full.x2,        &s.ln2_out,
              &full.fc_out,     &s.gelu_out,     &full.ln1_stats,
              &full.ln2_stats,  MlpSaved{&full.fc_out, &s.gelu_out, &own.moe, own.aux_grad_scale}};
}

void Block::run_forward(const Refs& a, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T) {
  const Ops& ops = ops_for(x_in.device);
  const DType dt = x_in.dtype;
  const Device dev = x_in.device;
  // Norms and residual adds on the rows this model holds; linears give all B*T rows.
  const Shape rows = x_in.shape;
  ensure(*a.ln1_out, rows, dt, dev);
  ensure(*a.qkv_out, {B, T, qkv->out_features}, dt, dev);
  ensure(*a.atty, {B, T, attn_proj->in_features}, dt, dev);
  ensure(*a.lse, {B, n_head, T}, DType::F32, dev);
  ensure(*a.x2, rows, dt, dev);
  ensure(*a.ln2_out, rows, dt, dev);

  ln1.forward(*a.ln1_out, *a.ln1_stats, x_in);
  qkv->forward(*a.qkv_out, *a.ln1_out);
  ops.attention_forward(*a.atty, *a.lse, *a.qkv_out, n_head);
  attn_proj->forward(*a.x2, *a.atty);  // x2 = proj(atty) ...
  // ... + x, and ln2(x2) in the same pass. Selective recomputation reruns ln2.forward
  // on the saved x2; the fused op gives its bits, so gradients match every mode.
  ln2.forward_residual(*a.x2, *a.ln2_out, *a.ln2_stats, *a.x2, x_in);
  mlp->forward(a.mlp, x_out, *a.ln2_out, B, T);
  ops.add(x_out, x_out, *a.x2);
}

void Block::forward(BlockActs& acts, Tensor& x_out, const Tensor& x_in, int64_t B, int64_t T) {
  acts.B = B, acts.T = T;
  run_forward(refs(acts), x_out, x_in, B, T);
}

// A scratch gradient shaped like `like`. Not zeroed: the ops writing into these
// (matmul, gelu and attention backward) overwrite their input gradient.
static Tensor& sized(Tensor& t, const Tensor& like) {
  ensure(t, like.shape, like.dtype, like.device);
  return t;
}

void Block::backward(BlockActs& acts, Tensor& dres, const Tensor& x_in, BlockScratch& s) {
  const Ops& ops = ops_for(x_in.device);
  const Refs a = refs(acts);
  if (mode_ == Recompute::Full) {
    ensure(shared_->x_out, x_in.shape, x_in.dtype, x_in.device);
    run_forward(a, shared_->x_out, x_in, acts.B, acts.T);
  } else if (mode_ == Recompute::Selective) {
    ln1.forward(*a.ln1_out, *a.ln1_stats, x_in);
    ln2.forward(*a.ln2_out, *a.ln2_stats, *a.x2);
    mlp->recompute(a.mlp);
  }
  Tensor &ln1_out = *a.ln1_out, &qkv_out = *a.qkv_out, &atty = *a.atty, &x2 = *a.x2, &ln2_out = *a.ln2_out;
  // MLP branch: dres is d(out), which flows unchanged into x2 and into the MLP.
  mlp->backward(a.mlp, sized(s.dln, ln2_out), dres, ln2_out, s.dfch, s.moe);
  ln2.backward(dres, s.dln, x2, *a.ln2_stats);  // dres is now d(x2)
  // Attention branch.
  attn_proj->backward(&sized(s.datty, atty), dres, atty);
  ops.attention_backward(sized(s.dqkv, qkv_out), s.datty, atty, *a.lse, qkv_out, n_head);
  qkv->backward(&sized(s.dln, ln1_out), s.dqkv, ln1_out);
  ln1.backward(dres, s.dln, x_in, *a.ln1_stats);  // dres is now d(x_in)
}

void Block::backward_input(BlockActs& a, Tensor& dres, const Tensor& x_in, BlockScratch& s) {
  GPT_CHECK(mode_ == Recompute::None, "a split backward (parallel.schedule = zb-h1) needs train.recompute = none");
  const Ops& ops = ops_for(x_in.device);
  // The linears' output gradients land in (or are copied to) the micro-batch's own
  // buffers, which the weight pass reads; dres itself keeps changing.
  const Refs r = refs(a);
  ensure(a.d_mlp_proj, dres.shape, dres.dtype, dres.device);
  copy_(a.d_mlp_proj, dres);
  mlp->input_grad(r.mlp, sized(s.dln, a.ln2_out), dres, a.ln2_out, a.d_fc, s.moe);
  ln2.backward(dres, s.dln, a.x2, a.ln2_stats);  // dres is now d(x2)
  ensure(a.d_attn_proj, dres.shape, dres.dtype, dres.device);
  copy_(a.d_attn_proj, dres);
  attn_proj->input_grad(sized(s.datty, a.atty), dres, a.atty);
  ops.attention_backward(sized(a.d_qkv, a.qkv_out), s.datty, a.atty, a.lse, a.qkv_out, n_head);
  qkv->input_grad(sized(s.dln, a.ln1_out), a.d_qkv, a.ln1_out);
  ln1.backward(dres, s.dln, x_in, a.ln1_stats);  // dres is now d(x_in)
}

void Block::backward_weights(BlockActs& a) {
  mlp->weight_grad(refs(a).mlp, a.d_mlp_proj, a.d_fc, a.ln2_out);
  attn_proj->weight_grad(a.d_attn_proj, a.atty);
  qkv->weight_grad(a.d_qkv, a.ln1_out);
}

}  // namespace gpt
