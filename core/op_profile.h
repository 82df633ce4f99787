// Where a step's time goes, per ops-table entry. While profiling is on, ops_for() hands
// out a table whose compute and transfer entries synchronise the device before and after
// calling the backend and add the wall time between to that entry's total. The syncs
// cost the host/device overlap (a profiled step is slower), but each op's own time,
// launch included, is measured exactly; what the step spends outside the ops
// (communication, host work, the optimizer's host side) is the step time minus the sum.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/ops.h"

namespace gpt {

struct OpTime {
  std::string name;  // the ops-table entry, e.g. "matmul_backward"
  double seconds = 0;
  int64_t calls = 0;
};

// Off by default; takes effect at the next ops_for() call.
void set_op_profiling(bool on);
bool op_profiling();
// The profiled table over `base` (one per backend, made on first use).
const Ops& profiled_ops(const Ops& base);
// Totals per entry for the device since the last reset, largest first (entries never
// called are left out).
std::vector<OpTime> op_profile(Device device);
void reset_op_profile();

}  // namespace gpt
