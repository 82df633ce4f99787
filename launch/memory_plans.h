// pretrain --train.plan_only: what a run would hold per rank under each recompute mode,
// from the configuration alone (core/model/memory_plan.h), without data, a device or
// training: "does it fit, and with which recomputation?" answered before a job is queued.
#pragma once
#include <string>

#include "launch/config.h"

namespace gpt {

// The text printed: a header naming the model, batch, dtype and device, then one line per
// recompute mode (the configured one marked). world / parallel.tp ranks share the optimizer under
// parallel.zero1.
std::string describe_memory_plans(const TrainConfig& cfg, int world);

}  // namespace gpt
