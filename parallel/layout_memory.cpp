#include "parallel/layout_memory.h"

#include <algorithm>

namespace gpt::parallel {

std::vector<pipeline::LayerRange> pipeline_chunk_layers(const GPTConfig& cfg, int T, const MemoryLayout& layout) {
  return pipeline::split_layers(cfg.n_layer, layout.pp * layout.virtual_stages, layout.layers_per_chunk,
                                /*embedding_cost=*/0.0,
                                pipeline::head_cost_in_layers(cfg.vocab_size, cfg.n_embd, T));
}

PlanStage pipeline_plan_stage(const GPTConfig& cfg, int T, const MemoryLayout& layout, int stage) {
  if (layout.pp <= 1) return PlanStage{};
  const pipeline::PipelineShape shape{layout.pp, layout.micro_batches, layout.virtual_stages};
  const std::vector<pipeline::LayerRange> layers = pipeline_chunk_layers(cfg, T, layout);
  PlanStage p;
  p.layers = 0, p.moe_layers = 0;
  for (int k = 0; k < shape.virtual_stages; ++k) {
    const pipeline::LayerRange& r = layers[size_t(stage + k * shape.stages)];
    p.layers += r.count();
    for (int l = r.begin; l < r.end; ++l) p.moe_layers += cfg.moe_block(l) ? 1 : 0;
  }
  p.embedding = stage == 0;
  p.head = stage == shape.stages - 1;
  p.split_backward = layout.schedule == pipeline::ScheduleKind::ZeroBubbleH1;
  p.pipelined = true;
  // Walk the schedule: a (micro, chunk) holds its chunk's layers from its forward to its
  // last backward pass.
  int held = 0, peak = 0;
  for (const pipeline::Action& a : pipeline::make_schedule(layout.schedule, shape, stage)) {
    const int n = layers[size_t(a.chunk)].count();
    if (a.op == pipeline::Op::Forward) peak = std::max(peak, held += n);
    if (a.op == pipeline::Op::Backward || a.op == pipeline::Op::BackwardWeight) held -= n;
  }
  p.in_flight = std::max(1, (peak + p.layers - 1) / std::max(1, p.layers));
  return p;
}

MemoryPlan rank_memory_plan(const GPTConfig& cfg, int B, int T, Recompute recompute, DType act, Device device,
                            const MemoryLayout& layout, int stage) {
  // Under ZeRO-1 the data-parallel ranks of a (tp, pp) coordinate share the AdamW state.
  const int shards = layout.zero1 ? std::max(1, layout.dp) : 1;
  return plan_memory(cfg, B, T, recompute, shards, act, device, layout.tp,
                     pipeline_plan_stage(cfg, T, layout, stage), layout.sp, layout.ep);
}

StageMemory largest_stage_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, DType act, Device device,
                                 const MemoryLayout& layout) {
  StageMemory best;
  for (int s = 0; s < std::max(1, layout.pp); ++s) {
    const MemoryPlan p = rank_memory_plan(cfg, B, T, recompute, act, device, layout, s);
    if (s == 0 || p.total() > best.plan.total()) best = {s, p};
  }
  return best;
}

}  // namespace gpt::parallel
