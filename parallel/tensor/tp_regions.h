// The collectives tensor parallelism inserts, named by the boundary they cross and as
// forward/backward pairs (Megatron's naming):
//   copy_to_tp_region      before a column-parallel linear: identity forward,
//                          all-reduce of the input gradient backward;
//   reduce_from_tp_region  after a row-parallel linear: all-reduce forward,
//                          identity backward.
// Both reduce with the same call, tp_allreduce. Host communicators (MPI) cannot sum
// bf16, so a bf16 activation is summed through an fp32 copy there; NCCL sums bf16
// itself. Synchronous: the caller needs the sum before its next op.
#pragma once
#include "parallel/communicator.h"

namespace gpt::parallel {

class TpRegion {
 public:
  TpRegion(Communicator& comm, Group tp) : comm_(comm), tp_(std::move(tp)) {}
  const Group& group() const { return tp_; }
  int size() const { return tp_.size(); }
  int rank() const { return tp_.rank; }
  // In place: t = the sum of t over the TP group.
  void allreduce(Tensor& t);

 private:
  Communicator& comm_;
  Group tp_;
  Tensor f32_;  // fp32 staging for bf16 sums on host communicators
};

}  // namespace gpt::parallel
