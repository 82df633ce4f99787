#include "core/model/memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "core/layers/head_loss.h"
#include "core/layers/token_embedding.h"

namespace gpt {

std::string MemoryPlan::describe() const {
  // GiB for real models, MiB for the small ones of debug runs and tests.
  const bool big = total() >= (size_t(1) << 30);
  const double unit = big ? 1024.0 * 1024.0 * 1024.0 : 1024.0 * 1024.0;
  auto u = [&](size_t b) { return double(b) / unit; };
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "params %.2f + grads %.2f + optimizer %.2f + activations %.2f + logits %.2f + workspace %.2f = %.2f %s",
                u(params), u(grads), u(optimizer), u(activations), u(logits), u(workspace), u(total()),
                big ? "GiB" : "MiB");
  return buf;
}

size_t backend_workspace_bytes(Device device) {
  return device == Device::CUDA ? size_t(64) << 20 : 0;
}

namespace {

// Per-token sizes of one kind of buffer, in elements: `held` on the rows of the residual
// stream this rank holds (all B*T of them, or B*T / tp under sequence parallelism),
// `split` on all B*T rows of this rank's heads and channels; each in the activation
// dtype or (the statistics) fp32.
struct RowBytes {
  size_t held = 0, split = 0, held_f32 = 0, split_f32 = 0;
  size_t at(size_t a, size_t held_rows, size_t all_rows) const {
    return (held * a + held_f32 * 4) * held_rows + (split * a + split_f32 * 4) * all_rows;
  }
};

// One block's footprint by family: parameters split over TP and replicated, and per
// token the activations it keeps under the recompute mode, the buffers shared by all
// blocks, the zero-bubble split's kept output gradients, and the backward scratch every
// block reuses.
struct BlockFootprint {
  size_t params_split = 0, params_whole = 0;
  RowBytes kept, shared, split_grads, scratch;
};

// GPT-2 (core/layers/block.h): 12 C^2 + 7 C parameters split over TP (qkv, both
// projections' and fc's weights, the qkv and fc biases), 6 C replicated (two
// LayerNorms, two row-parallel biases). A block keeps 15 C activations under none (ln1,
// x2, ln2 held; qkv 3C, atty C, fc and gelu 4C each split over TP), 9 C under selective
// (+ 6 C shared by all blocks: ln1, ln2, gelu), none under full (+ one shared set and its
// output), plus fp32 statistics: NH softmax log-sum-exps (split) and 4 LayerNorm
// mean/rstd values (held).
BlockFootprint gpt2_block(size_t C, size_t NH, size_t t, Recompute recompute) {
  BlockFootprint b;
  b.params_split = 12 * C * C + 7 * C, b.params_whole = 6 * C;
  switch (recompute) {
    case Recompute::None: b.kept = {3 * C, 12 * C / t, 4, NH}; break;
    case Recompute::Selective: b.kept = {C, 8 * C / t, 4, NH}, b.shared = {2 * C, 4 * C / t, 0, 0}; break;
    case Recompute::Full: b.shared = {4 * C, 12 * C / t, 4, NH}; break;
  }
  b.split_grads = {2 * C, 7 * C / t, 0, 0};  // d(mlp_proj), d(attn_proj); d(fc) 4 C, d(qkv) 3 C
  b.scratch = {C, 8 * C / t, 0, 0};          // dln; dqkv, datty, dfch
  return b;
}

// LLaMA (core/layers/llama_block.h), Q = (NH + 2 NKV) HS the packed qkv width, A = NH HS
// the attention output, F the SwiGLU width: C Q + A C + 3 F C parameters split over TP,
// 2 C replicated (two RMSNorms, no biases). A block keeps norm1, h, norm2 (3 C held) and
// qkv Q, atty A, gate|up 2 F, SwiGLU F split over TP under none; under selective the two
// norms' outputs and SwiGLU's are shared by all blocks; fp32 statistics: NH
// log-sum-exps and 2 rstd.
BlockFootprint llama_block(const GPTConfig& cfg, size_t t, Recompute recompute) {
  const size_t C = size_t(cfg.n_embd), HS = size_t(cfg.head_size()), F = size_t(cfg.ffn());
  const size_t Q = (size_t(cfg.n_head) + 2 * size_t(cfg.kv_heads())) * HS, A = size_t(cfg.n_head) * HS;
  const size_t NH = size_t(cfg.n_head) / t;
  BlockFootprint b;
  b.params_split = C * Q + A * C + 3 * F * C, b.params_whole = 2 * C;
  const size_t split = (Q + A + 3 * F) / t;
  switch (recompute) {
    case Recompute::None: b.kept = {3 * C, split, 2, NH}; break;
    case Recompute::Selective: b.kept = {C, (Q + A + 2 * F) / t, 2, NH}, b.shared = {2 * C, F / t, 0, 0}; break;
    case Recompute::Full: b.shared = {4 * C, split, 2, NH}; break;
  }
  b.split_grads = {2 * C, (Q + 2 * F) / t, 0, 0};  // d(down), d(o_proj); d(gate_up), d(qkv)
  b.scratch = {C, (Q + A + 3 * F) / t, 0, 0};      // dnorm; dqkv, datty, dgate_up, dswiglu
  return b;
}

// The dense GPT-2 MLP's share of gpt2_block: fc [4C, C] with its bias and proj [C, 4C]
// split over TP, proj's bias whole; it keeps fc's and GELU's outputs (8 C per token
// under none, fc's 4 C under selective) and its backward needs d(fc_out) (4 C scratch).
struct DenseMlp {
  size_t params_split, params_whole, kept_split, scratch_split;
};
DenseMlp gpt2_dense_mlp(size_t C, size_t t, Recompute recompute) {
  const size_t kept = recompute == Recompute::None ? 8 * C : recompute == Recompute::Selective ? 4 * C : 0;
  return {8 * C * C + 4 * C, C, kept / t, 4 * C / t};
}

// The parameters of one MoE layer: the experts' (divided over ep ranks by the caller)
// and the rest (router and shared experts), which every rank holds whole.
struct MoeParams {
  size_t experts = 0, other = 0;
};
MoeParams moe_layer_params(const GPTConfig& cfg) {
  const MoeConfig m = cfg.moe_layer();
  const size_t C = size_t(cfg.n_embd), E = size_t(m.experts), H = size_t(m.expert_hidden);
  const size_t SH = size_t(m.shared_experts) * H;
  MoeParams p;
  p.experts = E * (H * C + H + C * H + C);
  p.other = E * C + (SH > 0 ? SH * C + SH + C * SH + C : 0);
  return p;
}

}  // namespace

size_t moe_plan_activation_bytes(const GPTConfig& cfg, int B, int T, bool scratch, int ep) {
  if (!cfg.is_moe()) return 0;
  const MoeConfig m = cfg.moe_layer();
  const size_t f = 4, C = size_t(cfg.n_embd), E = size_t(m.experts), H = size_t(m.expert_hidden);
  const size_t SH = size_t(m.shared_experts) * H, N = size_t(B) * size_t(T), k = size_t(m.top_k);
  // MoeLayer::row_bound: the buffers are sized for it, not for a step's actual loads.
  const int64_t G = m.group_size(T), cap = m.capacity(G);
  const size_t rows = cap < 0 ? N * k : std::min(N * k, N / size_t(G) * E * size_t(cap));
  const size_t P = size_t(ep > 1 ? ep : 1), local = E / P;
  if (P == 1) {  // the experts run on this rank's routed rows, in place
    if (scratch) return (rows * (C + H + C) + N * (SH + C + E)) * f;
    return (rows * (C + H + H + C) + N * 2 * E + N * 2 * SH) * f;
  }
  // MoeLayer::received_row_bound: every rank's rows for this rank's experts.
  size_t per_source = N * std::min(k, local);
  if (cap >= 0) per_source = std::min(per_source, N / size_t(G) * local * std::min(size_t(cap), size_t(G)));
  const size_t received = P * per_source, staging = std::max(rows, received) * C;
  // Routed rows in and out [rows, C], the experts' rows in, pre, act, out [received, ..];
  // backward: d(out), d(in) of the routed rows, d(pre), d(out), d(in) of the experts'
  // rows and the rank-order staging buffer.
  if (scratch) return (rows * 2 * C + received * (H + 2 * C) + staging + N * (SH + C + E)) * f;
  return (rows * 2 * C + received * (C + H + H + C) + N * 2 * E + N * 2 * SH) * f;
}

size_t moe_plan_layer_bytes(const GPTConfig& cfg, int B, int T, int ep) {
  if (!cfg.is_moe() || ep <= 1) return 0;
  const MoeConfig m = cfg.moe_layer();
  const size_t C = size_t(cfg.n_embd), E = size_t(m.experts), N = size_t(B) * size_t(T), k = size_t(m.top_k);
  const int64_t G = m.group_size(T), cap = m.capacity(G);
  const size_t rows = cap < 0 ? N * k : std::min(N * k, N / size_t(G) * E * size_t(cap));
  const size_t P = size_t(ep), local = E / P;
  size_t per_source = N * std::min(k, local);
  if (cap >= 0) per_source = std::min(per_source, N / size_t(G) * local * std::min(size_t(cap), size_t(G)));
  return std::max(rows, P * per_source) * C * 4;
}

MemoryPlan plan_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, int optimizer_shards,
                       DType act, Device device, int tp, const PlanStage& stage, bool sp, int ep) {
  const size_t f = 4, a = dtype_size(act), C = size_t(cfg.n_embd), t = size_t(tp > 0 ? tp : 1);
  const size_t V = size_t(cfg.vocab_size);
  const size_t L = stage.layers < 0 ? size_t(cfg.n_layer) : size_t(stage.layers);
  const bool llama = cfg.family == ModelFamily::Llama;
  const BlockFootprint blk = llama ? llama_block(cfg, t, recompute) : gpt2_block(C, size_t(cfg.n_head) / t, t, recompute);
  // The blocks' parameters; wte (and GPT-2's wpe) on the embedding stage; on the head
  // stage the final norm (LayerNorm 2 C, RMSNorm C) and the head's own matrix: LLaMA's
  // untied lm_head, or a tied wte's copy on a head stage without the embedding. wte and
  // lm_head are split by vocabulary rows: Vs = Vp / tp of them, padding included
  // (core/layers/token_embedding.h).
  const size_t Vs = size_t(padded_vocab(int64_t(V), int(t))) / t;
  const size_t embedding = Vs * C + (llama ? 0 : size_t(cfg.block_size) * C);
  const bool head_matrix = !cfg.tie_embeddings || !stage.embedding;
  // MoE blocks (GPT-2 only): of the L blocks, Lm trade the dense MLP for the MoE layer.
  const size_t Lm = !cfg.is_moe() ? 0 : stage.moe_layers < 0 ? size_t(cfg.moe_blocks()) : size_t(stage.moe_layers);
  const DenseMlp mlp = gpt2_dense_mlp(C, t, recompute);
  const MoeParams moe = Lm > 0 ? moe_layer_params(cfg) : MoeParams{};
  const size_t eps = size_t(ep > 0 ? ep : 1);
  const size_t N_experts = Lm * moe.experts / eps;  // this rank's E / ep experts of each MoE layer
  const size_t N = L * blk.params_split / t + L * blk.params_whole + (stage.embedding ? embedding : 0) +
                   (stage.head ? (llama ? C : 2 * C) + (head_matrix ? Vs * C : 0) : 0) -
                   Lm * (mlp.params_split / t + mlp.params_whole) + Lm * moe.other + N_experts;
  const size_t tok = size_t(B) * T, shards = size_t(optimizer_shards > 0 ? optimizer_shards : 1);
  MemoryPlan p;
  p.param_count = int64_t(N);
  p.params = N * f + (act == DType::F32 ? 0 : N * a);  // master values (+ compute copy)
  p.grads = N * f;
  // AdamW m and v for this rank's share; a sharded run also keeps its reduced grad shard.
  // Under expert parallelism the experts' state shards over the dp / ep ranks holding the
  // same experts, the rest over all dp ranks.
  auto state = [&](size_t n, size_t over) {
    const size_t share = (n + over - 1) / over;
    return 2 * share * f + (over > 1 ? share * f : 0);
  };
  p.optimizer = eps == 1 || N_experts == 0 ? state(N, shards)
                                           : state(N - N_experts, shards) + state(N_experts, std::max<size_t>(1, shards / eps));

  // Sequence parallelism puts every held term on tok / tp rows: so with SP a block's
  // every activation divides by tp, as do the residual stream and the head's input and
  // their gradients.
  const bool seq = sp && t > 1 && tok % t == 0;
  const size_t rows = seq ? tok / t : tok;
  RowBytes per_block = blk.kept;
  // An MoE block keeps the block's other activations and, instead of the dense MLP's,
  // its MoE layer's (added per micro-batch below, on all rows: MoE has no SP).
  RowBytes per_moe_block = blk.kept;
  per_moe_block.split -= mlp.kept_split;
  // Zero-bubble's split backward keeps each linear's output gradient until the weight pass.
  if (stage.split_backward) {
    per_block.held += blk.split_grads.held;
    per_block.split += blk.split_grads.split;
  }
  // Per micro-batch in flight (held rows): the residual stream (one per block boundary)
  // and dres; on the head stage the final norm's output, its gradient and statistics
  // (LayerNorm mean and rstd, RMSNorm rstd).
  const size_t norm_stats = llama ? 1 : 2;
  const size_t per_micro = ((L + 1) * C + C + (stage.head ? 2 * C : 0)) * a + (stage.head ? norm_stats * f : 0);
  // Shared by the micro-batches: the blocks' backward scratch and, in a pipeline, the
  // buffers an activation and a gradient are received into (held rows).
  RowBytes scratch = blk.scratch;
  if (stage.pipelined) scratch.held += 2 * C;
  if (Lm > 0 && Lm == L) scratch.split -= mlp.scratch_split;  // no dense MLP runs backward
  const size_t in_flight = size_t(stage.in_flight > 0 ? stage.in_flight : 1);
  const size_t moe_kept = Lm * (per_moe_block.at(a, rows, tok) + moe_plan_activation_bytes(cfg, B, T, false, ep));
  p.activations = ((L - Lm) * per_block.at(a, rows, tok) + moe_kept + per_micro * rows) * in_flight +
                  blk.shared.at(a, rows, tok) + scratch.at(a, rows, tok) +
                  (Lm > 0 ? moe_plan_activation_bytes(cfg, B, T, true, ep) : 0) + Lm * moe_plan_layer_bytes(cfg, B, T, ep);
  // SP's gathered rows (TpRegion scratch): two [tok, C] buffers, e.g. a column-parallel
  // linear's gathered input and its whole-rows input gradient.
  if (seq) p.activations += 2 * C * a * tok;
  // TP sums bf16 activations through an fp32 copy on host communicators (TpRegion):
  // a reduce-scatter's whole input and its shard under SP, an all-reduce's tensor without.
  if (t > 1 && act != DType::F32 && device == Device::CPU) p.activations += C * f * (tok + (seq ? rows : 0));
  // On the head stage: one chunk of logits over this rank's Vs vocabulary columns
  // (turned into their gradient in place, see ChunkedHeadLoss; never [B, T, V] under TP)
  // and the fp32 losses of every position; under TP the gathered softmax statistics of
  // a chunk, [tp, 3, rows] fp32 (parallel/tensor/vocab_parallel.h).
  const size_t chunk = size_t(head_chunk_rows(int64_t(tok), int64_t(Vs)));
  if (stage.head) p.logits = chunk * Vs * a + f * tok + (t > 1 ? t * 3 * chunk * f : 0);
  p.workspace = backend_workspace_bytes(device);
  return p;
}

}  // namespace gpt
