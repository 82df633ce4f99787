// Text and JSON for the plan program: a prediction's breakdown, the validation tables
// and the planner's results.
#pragma once
#include <string>
#include <vector>

#include "perf/planner.h"
#include "perf/published.h"

namespace gpt::perf {

const char* recompute_name(Recompute r);
std::string describe_layout(const Layout& L);  // "tp 8 pp 8 v 2 dp 24 b 2 recompute full zero1 off"

// Readable breakdown of one prediction (times, memory, MFU).
std::string describe_prediction(const ModelShape& m, const Cluster& c, const Layout& L, const Prediction& p);
// {"tflops_per_gpu":...,"mfu":...,"step_s":...,"memory_gib_per_gpu":...,...}
std::string prediction_json(const Layout& L, const Prediction& p);

// Side-by-side predicted vs published, held-out rows marked.
std::string describe_validation(const std::vector<TableCheck>& checks);

// The best layouts, one line each with what limits it.
std::string describe_search(const std::vector<Candidate>& best, const Cluster& c);

// The planner against a published layout: Narayanan et al.'s 145.6B model on 1536 A100s
// (batch 2304, their software settings) and GPT-2 1.5B on 8 H100s (batch 512 × 1024).
struct PlannerSanity {
  Prediction published;     // Megatron's own layout: tp 8, pp 8, v 2, b 2, full recompute
  Candidate best_145b;      // the planner's best under the same settings
  Candidate best_145b_full; // its best that also recomputes everything (layout alone)
  Candidate best_gpt2;      // GPT-2 1.5B on 8 × h100-sxm
};
PlannerSanity planner_sanity();
std::string describe_sanity(const PlannerSanity& s);

}  // namespace gpt::perf
