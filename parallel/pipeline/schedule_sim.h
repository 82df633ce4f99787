// A discrete-event simulator of pipeline schedules: runs every rank's action list with
// given pass costs, matching each send with its receive across ranks, and checks that the
// schedule is valid. Used by the tests (every schedule for many shapes, no MPI) and by
// the benchmark for the predicted bubble beside the measured one.
#pragma once
#include <string>
#include <vector>

#include "parallel/pipeline/schedule.h"

namespace gpt::parallel::pipeline {

struct PassCosts {
  double forward = 1.0;
  double backward_input = 1.0;   // B; a whole Backward costs B + W
  double backward_weight = 1.0;  // W
  double p2p = 0.0;              // a message's latency from send to the receiver
};

struct SimResult {
  bool ok = false;
  std::string error;  // the first violation, naming rank and action, when !ok
  double makespan = 0;
  std::vector<double> busy;              // per rank: time spent computing
  std::vector<int> peak_activations;     // per rank: most (m, c) held (forward done, last backward pass not yet)
  double bubble_fraction = 0;            // 1 - sum(busy) / (p * makespan)
};

// Checks: every (m, c) has exactly one forward and one backward (or B then W) on the
// rank of c; a forward after its input exists, a backward after its forward and its
// output gradient; every send after the compute that produces it and matched by exactly
// one receive of the same kind, chunk and micro-batch on the right rank; no deadlock
// (a receive whose send never comes); nothing left unmatched at the end.
SimResult simulate(const std::vector<std::vector<Action>>& per_rank, const PipelineShape& shape,
                   const PassCosts& costs = {});

// The textbook bubble: (p - 1) / (m + p - 1) for GPipe and 1F1B, (p - 1) / (v m + p - 1)
// interleaved (every stage and chunk equally costly, no p2p latency); for zb-h1
// (p - 1) / (3m + p - 1), Qi et al.'s (p - 1)(F + B - W) bubble with F = B = W.
// Under those costs with F = B = W the simulator reproduces it exactly for GPipe and
// 1F1B, for interleaved when p divides m, for zb-h1 when m >= p.
double formula_bubble(ScheduleKind kind, const PipelineShape& shape);

}  // namespace gpt::parallel::pipeline
