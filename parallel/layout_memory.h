// What one rank of a parallel layout holds in memory, from the configuration alone.
// pretrain's start-up plan (launch/trainer.cpp), its --train.plan_only
// (launch/memory_plans.cpp) and the performance model (perf/perf_model.cpp) all ask these
// functions, so the three figures agree by construction: the per-rank footprint is
// core/model/memory_plan.h's, and what a pipeline stage holds (its blocks, the
// embedding or the head, the micro-batches in flight at its peak under the schedule) is
// read off the same layer split and schedule the pipeline runner executes.
// Pure: no MPI, no device (the plan program links it).
#pragma once
#include <vector>

#include "core/layers/block.h"
#include "core/model/gpt_config.h"
#include "core/model/memory_plan.h"
#include "core/tensor.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stage_split.h"

namespace gpt::parallel {

// A layout as far as memory is concerned. world = tp x pp x dp.
struct MemoryLayout {
  int tp = 1, pp = 1, dp = 1;
  int ep = 1;          // expert parallelism: each MoE layer's experts split over ep of the dp ranks
  bool sp = false;     // sequence parallelism over the tp ranks
  bool zero1 = false;  // AdamW state sharded over the dp ranks
  pipeline::ScheduleKind schedule = pipeline::ScheduleKind::OneFOneB;
  int virtual_stages = 1;
  int micro_batches = 1;               // per step and pipeline (train.grad_accum)
  std::vector<int> layers_per_chunk;   // parallel.layers_per_stage; empty: balanced
};

// The block range of every chunk (p x v of them): the user's counts, or the balanced
// split with the LM head's cost counted (stage_split.h). Throws naming
// 'parallel.layers_per_stage' or 'parallel.pp' when the layers cannot be cut that way.
std::vector<pipeline::LayerRange> pipeline_chunk_layers(const GPTConfig& cfg, int T, const MemoryLayout& layout);

// What pipeline stage `stage` holds: its chunks' blocks, the embedding on the first
// stage, the head on the last, and the micro-batches in flight at its peak, found by
// walking the stage's schedule (with interleaving, the peak of held chunk-layers over
// the stage's layers, rounded up). pp = 1: the whole model, one micro-batch.
PlanStage pipeline_plan_stage(const GPTConfig& cfg, int T, const MemoryLayout& layout, int stage);

// The memory plan of a rank on pipeline stage `stage` (every TP and DP rank of a stage
// holds the same), micro-batch B x T tokens.
MemoryPlan rank_memory_plan(const GPTConfig& cfg, int B, int T, Recompute recompute, DType act, Device device,
                            const MemoryLayout& layout, int stage);

// The stage whose rank holds the most (the first such stage on a tie) and its plan.
struct StageMemory {
  int stage = 0;
  MemoryPlan plan;
};
StageMemory largest_stage_memory(const GPTConfig& cfg, int B, int T, Recompute recompute, DType act, Device device,
                                 const MemoryLayout& layout);

}  // namespace gpt::parallel
