// The collectives tensor parallelism inserts, named by the boundary they cross and as
// forward/backward pairs (Megatron's naming):
//   copy_to_tp_region      before a column-parallel linear: identity forward,
//                          all-reduce of the input gradient backward;
//   reduce_from_tp_region  after a row-parallel linear: all-reduce forward,
//                          identity backward.
// Both reduce with the same call, allreduce. Host communicators (MPI) cannot sum bf16,
// so a bf16 activation is summed through an fp32 copy there; NCCL sums bf16 itself.
// The vocabulary-parallel head also gathers small per-row statistics (allgather;
// parallel/tensor/vocab_parallel.h). Synchronous: the caller needs the result next.
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
  // In place: buf holds size() equal chunks, this rank's at rank(); on return every
  // rank's chunk is in its place on every rank.
  void allgather(Tensor& buf);

 private:
  Communicator& comm_;
  Group tp_;
  Tensor f32_;  // fp32 staging for bf16 sums on host communicators
};

}  // namespace gpt::parallel
