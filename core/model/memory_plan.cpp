#include "core/model/memory_plan.h"

#include <cstdio>

#include "core/model/gpt.h"

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

MemoryPlan plan_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, int optimizer_shards,
                       DType act, Device device, int tp, const PlanStage& stage, bool sp) {
  const size_t f = 4, a = dtype_size(act), C = size_t(cfg.n_embd), t = size_t(tp > 0 ? tp : 1);
  const size_t V = size_t(cfg.vocab_size);
  const size_t L = stage.layers < 0 ? size_t(cfg.n_layer) : size_t(stage.layers);
  // Per block 12 C^2 + 7 C parameters split over TP (qkv, both projections' and fc's
  // weights, the qkv and fc biases) and 6 C replicated (two LayerNorms, two row-parallel
  // biases); wte and wpe on the embedding stage, the final LayerNorm (and, without the
  // embedding, the tied wte's copy) on the head stage. wte is split by vocabulary rows:
  // Vs = Vp / tp of them, padding included (core/layers/token_embedding.h).
  const size_t split = L * (12 * C * C + 7 * C);
  const size_t Vs = size_t(padded_vocab(int64_t(V), int(t))) / t;
  const size_t embedding = Vs * C + size_t(cfg.block_size) * C;
  const size_t N = split / t + L * 6 * C + (stage.embedding ? embedding : 0) +
                   (stage.head ? 2 * C + (stage.embedding ? 0 : Vs * C) : 0);
  const size_t NH = size_t(cfg.n_head) / t;  // heads this rank computes
  const size_t tok = size_t(B) * T, shards = size_t(optimizer_shards > 0 ? optimizer_shards : 1);
  MemoryPlan p;
  p.params = N * f + (act == DType::F32 ? 0 : N * a);  // master values (+ compute copy)
  p.grads = N * f;
  // AdamW m and v for this rank's share; a sharded run also keeps its reduced grad shard.
  const size_t share = (N + shards - 1) / shards;
  p.optimizer = 2 * share * f + (shards > 1 ? share * f : 0);

  // Bytes per token (see core/layers/block.h and core/model/gpt.cpp): a block keeps
  // 15 C activations under none (ln1, x2, ln2 whole; qkv 3C, atty C, fc and gelu 4C each
  // split over TP), 9 C under selective (+ 6 C shared by all blocks: ln1, ln2, gelu),
  // none under full (+ one shared set and its output), plus fp32 statistics: NH softmax
  // log-sum-exps and 4 LayerNorm mean/rstd values (shared too under full).
  // Each term is either on the rows of the residual stream this rank holds (`held`: all
  // tok of them, or tok / tp under sequence parallelism) or on all tok rows of this
  // rank's heads and channels (`split`): so with SP a block's every activation divides
  // by tp, (3 C a + 4 f) tok -> (3 C a + 4 f) tok / tp, as do the residual stream and
  // the head's input and their gradients.
  const bool seq = sp && t > 1 && tok % t == 0;
  const size_t rows = seq ? tok / t : tok;
  struct Bytes {  // per held row, per row of all tok
    size_t held = 0, split = 0;
    size_t at(size_t held_rows, size_t all_rows) const { return held * held_rows + split * all_rows; }
  };
  Bytes per_block, shared;
  switch (recompute) {
    case Recompute::None: per_block = {3 * C * a + 4 * f, 12 * C / t * a + NH * f}; break;
    case Recompute::Selective:
      per_block = {C * a + 4 * f, 8 * C / t * a + NH * f}, shared = {2 * C * a, 4 * C / t * a};
      break;
    case Recompute::Full: shared = {4 * C * a + 4 * f, 12 * C / t * a + NH * f}; break;
  }
  // Zero-bubble's split backward keeps each linear's output gradient until the weight
  // pass: d(mlp_proj) and d(attn_proj) C each (held rows), d(fc) 4 C and d(qkv) 3 C split.
  if (stage.split_backward) per_block.held += 2 * C * a, per_block.split += 7 * C / t * a;
  // Per micro-batch in flight (held rows): the residual stream (one per block boundary)
  // and dres; on the head stage the final LayerNorm's output, its gradient and statistics.
  const size_t per_micro = ((L + 1) * C + C + (stage.head ? 2 * C : 0)) * a + (stage.head ? 2 * f : 0);
  // Shared by the micro-batches: the blocks' backward scratch (d(ln) C held, 8 C split)
  // and, in a pipeline, the buffers an activation and a gradient are received into.
  const Bytes scratch{C * a + (stage.pipelined ? 2 * C * a : 0), 8 * C / t * a};
  const size_t in_flight = size_t(stage.in_flight > 0 ? stage.in_flight : 1);
  p.activations = (L * per_block.at(rows, tok) + per_micro * rows) * in_flight + shared.at(rows, tok) +
                  scratch.at(rows, tok);
  // SP's gathered rows (TpRegion scratch): two [tok, C] buffers, e.g. a column-parallel
  // linear's gathered input and its whole-rows input gradient.
  if (seq) p.activations += 2 * C * a * tok;
  // TP sums bf16 activations through an fp32 copy on host communicators (TpRegion):
  // a reduce-scatter's whole input and its shard under SP, an all-reduce's tensor without.
  if (t > 1 && act != DType::F32 && device == Device::CPU) p.activations += C * f * (tok + (seq ? rows : 0));
  // On the head stage: one chunk of logits over this rank's Vs vocabulary columns
  // (turned into their gradient in place, see GPT::head_loss; never [B, T, V] under TP)
  // and the fp32 losses of every position; under TP the gathered softmax statistics of
  // a chunk, [tp, 3, rows] fp32 (parallel/tensor/vocab_parallel.h).
  const size_t chunk = size_t(head_chunk_rows(int64_t(tok), int64_t(Vs)));
  if (stage.head) p.logits = chunk * Vs * a + f * tok + (t > 1 ? t * 3 * chunk * f : 0);
  p.workspace = backend_workspace_bytes(device);
  return p;
}

}  // namespace gpt
