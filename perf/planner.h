// The layout planner: every (tp, pp, virtual stages, micro-batch, recomputation, ZeRO-1)
// that fits a model on a cluster at a global batch, ranked by predicted step time.
#pragma once
#include <vector>

#include "perf/perf_model.h"

namespace gpt::perf {

struct Candidate {
  Layout layout;
  Prediction prediction;
};

// `base` supplies what is not searched (global batch, ep, SP, flash attention, overlap,
// dtype). Layouts that do not fit in memory are dropped; the fastest `top` come back,
// fastest first (ties: less memory first). TP groups stay inside a node (tp divides
// gpus_per_node). Layouts that differ only in the micro-batch and predict the same step
// (within 0.1%) come back once, the fastest of them.
std::vector<Candidate> search_layouts(const ModelShape& m, const Cluster& c, const Layout& base, int top);

// How many layouts were predicted by the last call in this thread (for the report).
int search_layouts_evaluated();

}  // namespace gpt::perf
