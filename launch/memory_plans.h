// pretrain's memory plans: the layout of a configuration as the memory plan sees it, and
// what --train.plan_only prints: what a run would hold per rank under each recompute
// mode, from the configuration alone (parallel/layout_memory.h over
// core/model/memory_plan.h), without data, a device or training: "does it fit, and with
// which recomputation?" answered before a job is queued.
#pragma once
#include <string>

#include "launch/config.h"
#include "parallel/layout_memory.h"

namespace gpt {

// The configuration's layout on `world` ranks: tp, pp, dp = world / (tp x pp) (at least
// 1, so a plan for a bigger job can be printed from one process), sp, zero1, the
// schedule, virtual stages, micro-batches per step (train.grad_accum) and
// parallel.layers_per_stage (throws naming the key for an item that is not a number).
parallel::MemoryLayout memory_layout(const TrainConfig& cfg, int world);

// The text printed: a header naming the model, batch, dtype, device and layout, then one
// line per recompute mode (the configured one marked) with the plan of the rank that
// holds the most (with pipeline stages, the stage is named). Each line ends with the
// total in bytes.
std::string describe_memory_plans(const TrainConfig& cfg, int world);

}  // namespace gpt
