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
                       DType act, Device device) {
  const size_t f = 4, a = dtype_size(act), N = size_t(cfg.num_params()), C = size_t(cfg.n_embd);
  const size_t L = size_t(cfg.n_layer), NH = size_t(cfg.n_head), V = size_t(cfg.vocab_size);
  const size_t tok = size_t(B) * T, shards = size_t(optimizer_shards > 0 ? optimizer_shards : 1);
  MemoryPlan p;
  p.params = N * f + (act == DType::F32 ? 0 : N * a);  // master values (+ compute copy)
  p.grads = N * f;
  // AdamW m and v for this rank's share; a sharded run also keeps its reduced grad shard.
  const size_t share = (N + shards - 1) / shards;
  p.optimizer = 2 * share * f + (shards > 1 ? share * f : 0);

  // Bytes per token (see core/layers/block.h and core/model/gpt.cpp): a block keeps
  // 15 C activations under none, 9 C under selective (+ 6 C shared by all blocks),
  // none under full (+ one shared set and its output), plus fp32 statistics: NH softmax
  // log-sum-exps and 4 LayerNorm mean/rstd values (shared too under full).
  size_t per_block = 0, shared = 0;
  switch (recompute) {
    case Recompute::None: per_block = 15 * C * a + NH * f + 4 * f; break;
    case Recompute::Selective: per_block = 9 * C * a + NH * f + 4 * f, shared = 6 * C * a; break;
    case Recompute::Full: per_block = 0, shared = 16 * C * a + NH * f + 4 * f; break;
  }
  const size_t model_level = ((L + 1) * C  // residual stream, one per block boundary
                              + 3 * C      // final LayerNorm output, its grad, dres
                              + 9 * C)     // backward scratch shared by the blocks
                                 * a +
                             2 * f;        // final LayerNorm statistics
  p.activations = (L * per_block + shared + model_level) * tok;
  // One chunk of logits (turned into their gradient in place, see GPT::head_loss) and
  // the fp32 losses of every position.
  p.logits = size_t(head_chunk_rows(int64_t(tok), int64_t(V))) * V * a + f * tok;
  p.workspace = backend_workspace_bytes(device);
  return p;
}

}  // namespace gpt
