// Expert parallelism's all-to-alls (core/layers/expert_exchange.h) over the
// Communicator's expert-parallel group: MPI_Alltoallv on host memory, NCCL grouped
// send/recv on device memory. The per-expert counts go first (int32), so every rank
// knows how many rows arrive from whom before the rows themselves move; the traffic
// counters see both under the group's name ("ep").
#pragma once
#include "core/layers/expert_exchange.h"
#include "parallel/communicator.h"

namespace gpt::parallel {

class EpExchange : public ExpertExchange {
 public:
  EpExchange(Communicator& comm, const Group& ep) : comm_(comm), ep_(ep) {}
  int size() const override { return ep_.size(); }
  int rank() const override { return ep_.rank; }
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send, int64_t per_rank) override;
  void exchange_rows(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                     const std::vector<int64_t>& recv_rows, int64_t width) override;

 private:
  Communicator& comm_;
  Group ep_;
};

}  // namespace gpt::parallel
