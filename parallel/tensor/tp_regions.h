// The collectives tensor parallelism inserts, named by the boundary they cross and as
// forward/backward pairs (Megatron's naming):
//   copy_to_tp_region      before a column-parallel linear: identity forward,
//                          all-reduce of the input gradient backward;
//   reduce_from_tp_region  after a row-parallel linear: all-reduce forward,
//                          identity backward.
// Under sequence parallelism (Korthikanti et al. 2022) the same boundaries become
//   gather_from_sequence_region   before a column-parallel linear: all-gather forward,
//                                 reduce-scatter of the input gradient backward;
//   scatter_to_sequence_region    after a row-parallel linear: reduce-scatter forward,
//                                 all-gather of the output gradient backward;
// the same bytes as the all-reduce they replace (a ring all-reduce is a reduce-scatter
// then an all-gather).
//
// Sequence shards. The residual stream of a micro-batch is N = B*T rows of C channels,
// row-major as [B, T, C]. Rank r holds the flat rows [r N/tp, (r+1) N/tp): a contiguous
// block, so the gather and the scatter are one collective on equal chunks with no
// transposition. (Megatron keeps [T, B, C] and splits T for the same reason; our
// tensors are [B, T, C] without strides, and every op of the sharded regions, LayerNorm,
// residual add, bias, works row by row, so which rows a rank holds does not matter.)
// Shapes that do not split (B*T not a multiple of tp: the sampler's growing prompt) stay
// whole and use the all-reduces; sequence_rows says which applies.
//
// Host communicators (MPI) cannot sum bf16, so a bf16 sum goes through an fp32 copy
// there; NCCL sums bf16 itself. The vocabulary-parallel head also gathers small per-row
// statistics (allgather; parallel/tensor/vocab_parallel.h). Synchronous: the caller
// needs the result next.
//
// comm_ms() is the wall time this rank has spent inside the collectives above (bf16
// staging included), for the metrics log and benchmarks/tp_bench.py: the share of a step
// spent in TP communication. Measured around the blocking call, so it includes waiting
// for the slowest rank of the group as well as moving the bytes. Two clock reads per
// collective; nothing else is synchronised for it.
#pragma once
#include "parallel/communicator.h"

namespace gpt::parallel {

class TpRegion {
 public:
  TpRegion(Communicator& comm, Group tp, bool sequence_parallel = false)
      : comm_(comm), tp_(std::move(tp)), sp_(sequence_parallel) {}
  const Group& group() const { return tp_; }
  int size() const { return tp_.size(); }
  int rank() const { return tp_.rank; }
  bool sequence_parallel() const { return sp_; }
  // The rows of the residual stream this rank holds for N positions: N / tp when
  // sequence parallel and N splits, else N.
  int64_t sequence_rows(int64_t N) const { return sp_ && N % tp_.size() == 0 ? N / tp_.size() : N; }

  // In place: t = the sum of t over the TP group.
  void allreduce(Tensor& t);
  // In place: buf holds size() equal chunks, this rank's at rank(); on return every
  // rank's chunk is in its place on every rank.
  void allgather(Tensor& buf);
  // full [N, ...] from every rank's shard [N/tp, ...] (all-gather by rows).
  void gather_rows(Tensor& full, const Tensor& shard);
  // shard [N/tp, ...] = this rank's rows of the sum over the group of full (reduce-scatter).
  void reduce_scatter_rows(Tensor& shard, const Tensor& full);

  // Scratch shared by the layers of the TP group, used only inside one call of theirs
  // (a gathered input, a whole-rows partial product): a view of slot 0 or 1, grown to
  // `shape` (a later call may move it: take the view again after growing).
  Tensor scratch(int slot, const Shape& shape, DType dtype, Device device);

  // Milliseconds spent in this region's collectives since construction.
  double comm_ms() const { return comm_ms_; }

 private:
  Communicator& comm_;
  Group tp_;
  bool sp_;
  Tensor f32_, f32_out_;  // fp32 staging for bf16 sums on host communicators
  Tensor scratch_[2];
  double comm_ms_ = 0;
};

}  // namespace gpt::parallel
