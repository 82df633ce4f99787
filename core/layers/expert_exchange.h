// How an MoE layer reaches experts held by other ranks (expert parallelism). The E
// experts are split evenly over the `size()` ranks of an expert-parallel group, rank j
// holding experts [j E/size, (j+1) E/size); the rows routed to another rank's experts go
// there and their outputs come back through the all-to-alls below. The model sees only
// this interface; parallel/expert/ implements it over the Communicator, and the trainer
// hands it to the model through its LinearFactory. No exchange: every expert is local.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace gpt {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int size() const = 0;  // ranks the experts are split over
  virtual int rank() const = 0;  // this rank's index among them
  // Every rank sends `per_rank` counts to each rank (send[j per_rank + i] to rank j) and
  // gets back what each rank sent it (recv[j per_rank + i] from rank j).
  virtual std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send, int64_t per_rank) = 0;
  // All-to-all of rows of `width` floats: `in` holds send_rows[j] rows for rank j, rank
  // after rank; `out` receives recv_rows[j] rows from rank j, rank after rank. Blocks
  // until `out` is filled (the layer has nothing to overlap it with yet).
  virtual void exchange_rows(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                             const std::vector<int64_t>& recv_rows, int64_t width) = 0;
};

}  // namespace gpt
