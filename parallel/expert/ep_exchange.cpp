#include "parallel/expert/ep_exchange.h"

#include <limits>

#include "core/error.h"

namespace gpt::parallel {

std::vector<int64_t> EpExchange::exchange_counts(const std::vector<int64_t>& send, int64_t per_rank) {
  const int P = ep_.size();
  GPT_CHECK(int64_t(send.size()) == per_rank * P,
            "expert exchange on " + ep_.describe() + ": " + std::to_string(send.size()) + " counts for " +
                std::to_string(P) + " ranks of " + std::to_string(per_rank));
  // Counts live on the host (the routing is host code); the communicator moves its own device's tensors.
  Tensor host = empty({int64_t(send.size())}, DType::I32, Device::CPU);
  int32_t* h = static_cast<int32_t*>(host.raw());
  for (size_t i = 0; i < send.size(); ++i) {
    GPT_CHECK(send[i] >= 0 && send[i] <= std::numeric_limits<int32_t>::max(), "expert exchange: count out of range");
    h[i] = int32_t(send[i]);
  }
  Tensor in_t = to_device(host, comm_.device());
  Tensor out_t = empty(in_t.shape, DType::I32, comm_.device());
  const std::vector<int64_t> each(size_t(P), per_rank);
  comm_.all_to_all(in_t, each, out_t, each, ep_).wait();
  const Tensor got_t = to_device(out_t, Device::CPU);
  const int32_t* got = static_cast<const int32_t*>(got_t.raw());
  std::vector<int64_t> got_counts(got, got + send.size());
  return got_counts;
}

void EpExchange::exchange_rows(const Tensor& in, const std::vector<int64_t>& send_rows, Tensor& out,
                               const std::vector<int64_t>& recv_rows, int64_t width) {
  std::vector<int64_t> send(send_rows), recv(recv_rows);
  for (int64_t& n : send) n *= width;
  for (int64_t& n : recv) n *= width;
  comm_.all_to_all(in, send, out, recv, ep_).wait();
}

}  // namespace gpt::parallel
