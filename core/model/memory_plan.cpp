#include "core/model/memory_plan.h"

#include <cstdio>

namespace gpt {

std::string MemoryPlan::describe() const {
  auto gib = [](size_t b) { return double(b) / (1024.0 * 1024.0 * 1024.0); };
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "params %.2f + grads %.2f + optimizer %.2f + activations %.2f + logits %.2f = %.2f GiB",
                gib(params), gib(grads), gib(optimizer), gib(activations), gib(logits), gib(total()));
  return buf;
}

MemoryPlan plan_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, int optimizer_shards) {
  const size_t f = 4, N = size_t(cfg.num_params()), C = size_t(cfg.n_embd), L = size_t(cfg.n_layer);
  const size_t NH = size_t(cfg.n_head), V = size_t(cfg.vocab_size), tok = size_t(B) * T;
  const size_t shards = size_t(optimizer_shards > 0 ? optimizer_shards : 1);
  MemoryPlan p;
  p.params = N * f;
  p.grads = N * f;
  // AdamW m and v for this rank's share; a sharded run also keeps its reduced grad shard.
  p.optimizer = 2 * ((N + shards - 1) / shards) * f + (shards > 1 ? (N + shards - 1) / shards * f : 0);

  // Floats per token (see core/layers/block.h and core/model/gpt.cpp): a block keeps
  // 15 C + NH under none, 9 C + NH under selective (+ 6 C shared), nothing under full
  // (+ one shared set and its output); LayerNorm statistics are 4 per block.
  size_t per_block = 0, shared = 0;
  switch (recompute) {
    case Recompute::None: per_block = 15 * C + NH; break;
    case Recompute::Selective: per_block = 9 * C + NH, shared = 6 * C; break;
    case Recompute::Full: per_block = 0, shared = 16 * C + NH; break;
  }
  per_block += 4;
  const size_t model_level = (L + 1) * C  // residual stream, one per block boundary
                             + 3 * C + 2   // final LayerNorm output, its grad, dres; stats
                             + 13 * C;     // backward scratch shared by the blocks
  p.activations = (L * per_block + shared + model_level) * tok * f;
  p.logits = (V + 1) * tok * f;  // logits (turned into their gradient in place) + losses
  return p;
}

}  // namespace gpt
