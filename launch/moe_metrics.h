// A training step's mixture-of-experts figures for the log: the auxiliary losses as the
// step's loss counts them (the mean over micro-batches and data-parallel ranks, as the
// cross-entropy) and each MoE layer's load summed over every rank's micro-batches, so
// the record is the same under any data-parallel layout.
#pragma once
#include <string>

#include "core/model/model.h"
#include "parallel/communicator.h"

namespace gpt {

// Collective over `dp` when it has several ranks: every rank calls it with its own sums.
// Host tensors: MoE runs on the CPU only so far (parse_config refuses CUDA).
MoeStepStats reduce_moe_stats(MoeStepStats s, int grad_accum, parallel::Communicator& comm,
                              const parallel::Group& dp);

// [{"layer":1,"tokens_per_expert":[..],"dropped":n,"assignments":n,"dropped_fraction":f},..]
std::string moe_layers_json(const MoeStepStats& s);

}  // namespace gpt
