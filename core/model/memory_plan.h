// What a training run will hold in device memory, computed from the model shape and
// the batch before anything is allocated: printed at start-up, compared with what the
// device has free (a run that cannot fit stops with the plan and a suggestion instead
// of failing mid-step), and checked against the allocator's peak after the first step.
#pragma once
#include <cstddef>
#include <string>

#include "core/layers/block.h"
#include "core/model/gpt_config.h"
#include "core/tensor.h"

namespace gpt {

struct MemoryPlan {
  size_t params = 0, grads = 0, optimizer = 0, activations = 0, logits = 0;
  size_t workspace = 0;  // what the backend holds for itself (see backend_workspace_bytes)
  int64_t param_count = 0;  // the parameters this rank holds (its stage, TP slices, experts)
  size_t total() const { return params + grads + optimizer + activations + logits + workspace; }
  std::string describe() const;  // one line, GiB per part
};

// B, T: one micro-batch per rank. optimizer_shards: ranks sharing the AdamW state
// (ZeRO-1 data parallelism), 1 otherwise.
// act: the activation dtype (BF16 under mixed precision, which also keeps a bf16 copy of
// the parameters; statistics, gradients and optimizer state stay fp32).
// The backend's own buffers beside the model's tensors: on CUDA the 32 MiB cuBLASLt
// workspace plus the grow-only scratch of reductions, the embedding sort and the
// attention backward (a few MiB at GPT-2 sizes), rounded up to 64 MiB; none on the CPU.
size_t backend_workspace_bytes(Device device);

// What one pipeline rank holds: its blocks, whether it has the embedding and/or the head
// (the head stage of a pipeline keeps its own copy of the tied wte), and how many
// micro-batches' activations are alive at its peak (1F1B: p - stage; GPipe: m). The
// default is the whole model with one micro-batch in flight.
struct PlanStage {
  int layers = -1;  // -1: all of cfg.n_layer
  bool embedding = true, head = true;
  int in_flight = 1;
  bool split_backward = false;  // zero-bubble: each block also keeps its linears' output gradients
  bool pipelined = false;       // receive buffers for the activations and gradients handed in
  int moe_layers = -1;          // of `layers`, the MoE blocks (-1: all of cfg.moe_blocks())
};

// tp: tensor-parallel ranks (parallel/tensor, no sequence parallelism): each block's
// matmul weights, column-parallel biases, attention heads and MLP channels divide by tp,
// and wte and the head's logits by vocabulary rows (padded_vocab(V, tp) / tp each);
// wpe, LayerNorms, row-parallel biases and the residual stream stay whole.
// cfg.family picks the block (GPT-2 or LLaMA); see BlockFootprint in the .cpp.
// sp: sequence parallelism over the tp ranks (parallel/tensor/tp_regions.h), when B*T
// splits: the activations on the rows of the residual stream (the stream itself, the
// norms' inputs, outputs and statistics, the residual adds, the head's input) divide by
// tp too, so a block's activations are 15 C / tp per token instead of 3 C + 12 C / tp;
// in exchange two [B*T, C] buffers hold gathered rows.
// ep: expert-parallel ranks. In an MoE block (GPTConfig::moe_block) the dense MLP's terms
// give way to the MoE layer's (core/layers/moe.h): router E C and shared experts whole,
// the E experts (2 H C + H + C each) divided by ep; their gradients alike; under ZeRO-1
// (optimizer_shards = dp) the experts' AdamW state shards over the dp / ep ranks that
// hold the same experts. Activations: moe_plan_activation_bytes below. Under TP every
// TP rank holds the MoE layer whole, so its terms are never divided by tp.
MemoryPlan plan_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, int optimizer_shards,
                       DType act = DType::F32, Device device = Device::CPU, int tp = 1,
                       const PlanStage& stage = {}, bool sp = false, int ep = 1);

// What one MoE layer keeps per micro-batch of N = B T tokens (routing groups of
// G = moe.group_tokens or T), in bytes, all fp32 (the layer's only dtype): the experts'
// rows in [C], pre [H], act [H], out [C] for the most rows a forward can keep (N k
// dropless, else min(N k, N / G x E x ceil(cf G k / E))), the router's logits and probs
// [N, E] and the shared experts' pre and act [N, S H]. With `scratch`, instead, the
// backward buffers of which one set serves every MoE layer: d(out), d(pre), d(in) per
// row, d(shared pre) [N, S H], dx_part [N, C] and d(logits) [N, E]. The router's index
// vectors (top-k choices, weights, rows: 16 bytes a token at k = 2) are host bookkeeping
// outside the allocator, and left out.
// Under expert parallelism (ep > 1) the experts run on every rank's rows for this
// rank's E / ep experts instead (MoeLayer::received_row_bound of them: in, pre, act, out),
// beside this rank's routed rows in and out; the scratch adds the experts' rows' d(out),
// d(in) and a rank-order staging buffer.
size_t moe_plan_activation_bytes(const GPTConfig& cfg, int B, int T, bool scratch, int ep = 1);
// Per MoE layer, once whatever the micro-batches in flight (ep > 1 only): the staging
// buffer the forward's all-to-alls go through.
size_t moe_plan_layer_bytes(const GPTConfig& cfg, int B, int T, int ep);

}  // namespace gpt
