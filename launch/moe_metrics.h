// A training step's mixture-of-experts figures for the log: the auxiliary losses as the
// step's loss counts them (the mean over micro-batches and data-parallel ranks, as the
// cross-entropy, summed over the MoE blocks wherever they live) and each MoE layer's load
// summed over every rank's micro-batches, so the record is the same under any layout.
#pragma once
#include <string>
#include <vector>

#include "core/model/gpt_config.h"
#include "core/model/model.h"
#include "parallel/communicator.h"

namespace gpt {

// This rank's figures since the last call: every model chunk's take_moe_stats() merged
// (a pipeline rank holds several chunks under interleaving; their blocks are distinct).
MoeStepStats take_moe_stats(const std::vector<Model*>& chunks);

// Collective over `dp` and over `pp` when they have several ranks: every rank calls it
// with its own sums, whether or not it holds MoE blocks. The result lists every MoE layer
// of `model` in layer order on every rank: under pipeline parallelism a stage holds only
// some of them, and rank 0, which writes the log, may hold none. TP ranks hold the same
// blocks with the same routing (the MoE is replicated there), so nothing is summed over tp.
// Host tensors: MoE runs on the CPU only so far (parse_config refuses CUDA).
MoeStepStats reduce_moe_stats(MoeStepStats s, int grad_accum, const GPTConfig& model,
                              parallel::Communicator& comm, const parallel::Group& dp,
                              const parallel::Group& pp);

// [{"layer":1,"tokens_per_expert":[..],"dropped":n,"assignments":n,"dropped_fraction":f},..]
std::string moe_layers_json(const MoeStepStats& s);

}  // namespace gpt
