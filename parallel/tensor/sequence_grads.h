// The one gradient fix-up sequence parallelism needs. The norms (LayerNorm weight and
// bias; any family's norm the model names through LinearFactory::add_norm_params) are
// replicated, but under SP each TP rank runs them on its own rows of the residual
// stream, so its gradient is a partial sum over those rows. Summing the partials over
// the TP group gives every rank the one-process gradient, after which the replicas take
// the same update and the global grad norm counts them once, as without SP.
//
// Everything else stays complete without a sum: the column-parallel weights and biases
// are this rank's slices computed from all rows (their input gathered); the row-parallel
// bias and wpe get their gradient from all rows of d(out) (gathered before use).
//
// When: once per step, when the last micro-batch's backward reports the range final
// (gradients of earlier micro-batches are still accumulating), and before the
// data-parallel reduction of that range starts: DataParallel::set_before_reduce.
// The norms of a block are adjacent in the flat buffer (ln1 then ln2, registered before
// the linears), so it is one all-reduce of 4 C values per block and one of 2 C for lnf.
#pragma once
#include <vector>

#include "core/param_store.h"
#include "parallel/dp_buckets.h"
#include "parallel/tensor/tp_regions.h"

namespace gpt::parallel {

class NormGradSum {
 public:
  // params: the norms' parameters (TensorParallelPlan::norm_params) in `store`.
  NormGradSum(TpRegion& tp, ParamStore& store, const std::vector<Param*>& params);
  // All-reduces (sum over TP) every norm range that lies inside [begin, end).
  void sum_within(int64_t begin, int64_t end);
  void sum_all() { sum_within(0, store_.total()); }
  const std::vector<ElemRange>& ranges() const { return ranges_; }

 private:
  TpRegion& tp_;
  ParamStore& store_;
  std::vector<ElemRange> ranges_;  // adjacent parameters merged, in buffer order
};

}  // namespace gpt::parallel
