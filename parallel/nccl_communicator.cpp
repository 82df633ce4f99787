// NCCL communicator for device tensors. Each group gets an MPI sub-communicator (to
// bootstrap: rank 0 of the group makes the ncclUniqueId, MPI broadcasts it) and an NCCL
// communicator. Calls run on one comm stream per group, ordered after the
// work already queued on the core backend's compute stream (Ops::compute_stream)
// through an event, so a bucket's reduce starts after the kernels that produced it.
// A handle is an event on the comm stream; wait() polls it and enforces the timeout
// (ncclCommAbort, then MPI_Abort with the rank, group and operation).
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/ops.h"
#include "parallel/comm_handle_state.h"

#include "parallel/communicator.h"

namespace gpt::parallel {
namespace {

#define CUDA_OK(call)                                                                   \
  do {                                                                                  \
    cudaError_t e_ = (call);                                                            \
    GPT_CHECK(e_ == cudaSuccess, std::string(#call) + ": " + cudaGetErrorString(e_));   \
  } while (0)
#define NCCL_OK(call)                                                                   \
  do {                                                                                  \
    ncclResult_t r_ = (call);                                                           \
    GPT_CHECK(r_ == ncclSuccess, std::string(#call) + ": " + ncclGetErrorString(r_));   \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
  }
  return ncclFloat32;
}

int64_t sum_of(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

bool all_equal(const std::vector<int64_t>& v) {
  for (int64_t x : v)
    if (x != v[0]) return false;
  return true;
}

char* at(const Tensor& t, int64_t elem) {
  return static_cast<char*>(t.raw()) + size_t(elem) * dtype_size(t.dtype);
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm world, CommConfig cfg) : cfg_(cfg) {
    MPI_Comm_dup(world, &world_);
    MPI_Comm_rank(world_, &rank_);
    MPI_Comm_size(world_, &size_);
    CUDA_OK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
    CUDA_OK(cudaMalloc(&barrier_buf_, sizeof(float)));
  }

  ~NcclCommunicator() override {
    for (auto& [name, s] : streams_) cudaStreamSynchronize(s);
    for (ncclComm_t c : nccl_owned_) ncclCommDestroy(c);
    for (MPI_Comm& c : mpi_owned_) MPI_Comm_free(&c);
    MPI_Comm_free(&world_);
    cudaFree(barrier_buf_);
    cudaEventDestroy(compute_done_);
    for (auto& [name, s] : streams_) cudaStreamDestroy(s);
  }

  int world_rank() const override { return rank_; }
  int world_size() const override { return size_; }
  Device device() const override { return Device::CUDA; }

  Group make_group(const std::string& name,
                   const std::vector<std::vector<int>>& partition) override {
    Group g;
    g.name = name;
    const int color = place_in_partition(g, partition, rank_);
    MPI_Comm_split(world_, color, g.rank, &g.mpi_comm);
    mpi_owned_.push_back(g.mpi_comm);
    ncclUniqueId id;
    if (g.rank == 0) NCCL_OK(ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, g.mpi_comm);
    ncclComm_t comm = nullptr;
    NCCL_OK(ncclCommInitRank(&comm, g.size(), id, g.rank));
    nccl_owned_.push_back(comm);
    g.nccl_comm = comm;
    return g;
  }

  CommHandle allreduce(Tensor& t, const Group& g, ReduceOp op) override {
    check(t, "allreduce", g);
    const ncclRedOp_t red = op == ReduceOp::avg ? ncclAvg : ncclSum;
    return launch("allreduce", g, ring_allreduce_bytes(double(t.nbytes()), g.size()), [&](cudaStream_t s) {
      NCCL_OK(ncclAllReduce(t.raw(), t.raw(), size_t(t.numel()), nccl_type(t.dtype), red,
                            g.nccl_comm, s));
    });
  }

  CommHandle reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                            const Group& g) override {
    check(in, "reduce_scatter", g);
    check(out, "reduce_scatter", g);
    GPT_CHECK(int(counts.size()) == g.size() && sum_of(counts) == in.numel(),
              "reduce_scatter on group " + g.describe() + ": counts do not match the input");
    const double own = double(counts[size_t(g.rank)] * int64_t(dtype_size(in.dtype)));
    return launch("reduce_scatter", g, ring_gather_scatter_bytes(double(in.nbytes()), own, g.size()),
                  [&](cudaStream_t s) {
                    if (all_equal(counts)) {
                      NCCL_OK(ncclReduceScatter(in.raw(), out.raw(), size_t(counts[0]),
                                                nccl_type(in.dtype), ncclSum, g.nccl_comm,
                                                s));
                      return;
                    }
                    // Uneven chunks: one reduce per chunk to its owner, fused in a group.
                    NCCL_OK(ncclGroupStart());
                    int64_t off = 0;
                    for (int i = 0; i < g.size(); ++i) {
                      NCCL_OK(ncclReduce(at(in, off), out.raw(), size_t(counts[size_t(i)]),
                                         nccl_type(in.dtype), ncclSum, i, g.nccl_comm, s));
                      off += counts[size_t(i)];
                    }
                    NCCL_OK(ncclGroupEnd());
                  });
  }

  CommHandle allgather(Tensor& buf, const std::vector<int64_t>& counts, const Group& g) override {
    check(buf, "allgather", g);
    GPT_CHECK(int(counts.size()) == g.size() && sum_of(counts) == buf.numel(),
              "allgather on group " + g.describe() + ": counts do not match the buffer");
    const double own = double(counts[size_t(g.rank)] * int64_t(dtype_size(buf.dtype)));
    return launch("allgather", g, ring_gather_scatter_bytes(double(buf.nbytes()), own, g.size()),
                  [&](cudaStream_t s) {
                    if (all_equal(counts)) {
                      NCCL_OK(ncclAllGather(at(buf, counts[0] * g.rank), buf.raw(),
                                            size_t(counts[0]), nccl_type(buf.dtype),
                                            g.nccl_comm, s));
                      return;
                    }
                    NCCL_OK(ncclGroupStart());
                    int64_t off = 0;
                    for (int i = 0; i < g.size(); ++i) {
                      NCCL_OK(ncclBroadcast(at(buf, off), at(buf, off), size_t(counts[size_t(i)]),
                                            nccl_type(buf.dtype), i, g.nccl_comm, s));
                      off += counts[size_t(i)];
                    }
                    NCCL_OK(ncclGroupEnd());
                  });
  }

  CommHandle all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                        const std::vector<int64_t>& recv_counts, const Group& g) override {
    check(in, "all_to_all", g);
    check(out, "all_to_all", g);
    GPT_CHECK(int(send_counts.size()) == g.size() && int(recv_counts.size()) == g.size() &&
                  sum_of(send_counts) <= in.numel() && sum_of(recv_counts) <= out.numel(),
              "all_to_all on group " + g.describe() + ": counts exceed the tensors");
    const double bytes =
        double((sum_of(send_counts) - send_counts[size_t(g.rank)]) * int64_t(dtype_size(in.dtype)));
    return launch("all_to_all", g, bytes, [&](cudaStream_t s) {
      NCCL_OK(ncclGroupStart());
      int64_t soff = 0, roff = 0;
      for (int j = 0; j < g.size(); ++j) {
        NCCL_OK(ncclSend(at(in, soff), size_t(send_counts[size_t(j)]), nccl_type(in.dtype), j,
                         g.nccl_comm, s));
        NCCL_OK(ncclRecv(at(out, roff), size_t(recv_counts[size_t(j)]), nccl_type(out.dtype), j,
                         g.nccl_comm, s));
        soff += send_counts[size_t(j)];
        roff += recv_counts[size_t(j)];
      }
      NCCL_OK(ncclGroupEnd());
    });
  }

  // NCCL has no tags: a pair's sends and recvs match in issue order, so `tag` is unused.
  CommHandle send(const Tensor& t, int peer, const Group& g, int tag) override {
    check(t, "send", g);
    return launch("send", g, double(t.nbytes()), [&](cudaStream_t s) {
      NCCL_OK(ncclSend(t.raw(), size_t(t.numel()), nccl_type(t.dtype), peer, g.nccl_comm, s));
    }, peer);
  }

  CommHandle recv(Tensor& t, int peer, const Group& g, int tag) override {
    check(t, "recv", g);
    return launch("recv", g, 0.0, [&](cudaStream_t s) {
      NCCL_OK(ncclRecv(t.raw(), size_t(t.numel()), nccl_type(t.dtype), peer, g.nccl_comm, s));
    }, peer);
  }

  CommHandle broadcast(Tensor& t, int root, const Group& g) override {
    check(t, "broadcast", g);
    const int last = (root + g.size() - 1) % g.size();
    const double bytes = g.size() > 1 && g.rank != last ? double(t.nbytes()) : 0.0;
    return launch("broadcast", g, bytes, [&](cudaStream_t s) {
      NCCL_OK(ncclBroadcast(t.raw(), t.raw(), size_t(t.numel()), nccl_type(t.dtype), root,
                            g.nccl_comm, s));
    });
  }

  CommHandle barrier(const Group& g) override {
    GPT_CHECK(g.nccl_comm, "barrier: group " + g.describe() + " has no NCCL communicator");
    return launch("barrier", g, 0.0, [&](cudaStream_t s) {
      NCCL_OK(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, g.nccl_comm,
                            s));
    });
  }

 private:
  void check(const Tensor& t, const char* op, const Group& g) const {
    GPT_CHECK(t.defined() && t.device == Device::CUDA,
              std::string(op) + " on group " + g.describe() +
                  ": the NCCL communicator takes device tensors (use the MPI one for host)");
    GPT_CHECK(g.nccl_comm, std::string(op) + ": group " + g.describe() +
                               " has no NCCL communicator (make it with this communicator)");
  }

  template <typename Issue>
  CommHandle launch(const char* op, const Group& g, double bytes, Issue issue, int peer = -1) {
    traffic_.add(g.name, op, bytes);
    const cudaStream_t stream = stream_of(g);
    auto compute = static_cast<cudaStream_t>(ops_for(Device::CUDA).compute_stream());
    CUDA_OK(cudaEventRecord(compute_done_, compute));
    CUDA_OK(cudaStreamWaitEvent(stream, compute_done_, 0));
    issue(stream);
    cudaEvent_t done;
    CUDA_OK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_OK(cudaEventRecord(done, stream));
    auto state = std::make_shared<CommHandle::State>();
    state->what = describe_call(rank_, op, g, peer);
    state->timeout_s = cfg_.timeout_s;
    ncclComm_t comm = g.nccl_comm;
    std::weak_ptr<CommHandle::State> weak = state;
    state->wait_hook = [done, comm, weak, timeout = cfg_.timeout_s]() {
      const auto start = std::chrono::steady_clock::now();
      for (;;) {
        cudaError_t e = cudaEventQuery(done);
        if (e == cudaSuccess) break;
        GPT_CHECK(e == cudaErrorNotReady, std::string("NCCL wait: ") + cudaGetErrorString(e));
        const double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > timeout) {
          ncclCommAbort(comm);  // unblocks the stream so the process can exit
          auto s = weak.lock();
          abort_on_timeout(s ? s->what : "NCCL collective", waited);
        }
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      // Events are per call and few; the leak of a never-waited handle's event is bounded
      // by the handle count, so destroy here on the wait path.
      cudaEventDestroy(done);
    };
    return CommHandle(state);
  }

  // One comm stream per group name: a pipeline's activation send never waits behind a
  // data-parallel bucket's all-reduce queued on another group, while the calls of one
  // group keep their order (which NCCL needs across its ranks).
  cudaStream_t stream_of(const Group& g) {
    cudaStream_t& s = streams_[g.name];
    if (!s) CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }

  CommConfig cfg_;
  MPI_Comm world_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::map<std::string, cudaStream_t> streams_;
  cudaEvent_t compute_done_ = nullptr;
  float* barrier_buf_ = nullptr;
  std::vector<MPI_Comm> mpi_owned_;
  std::vector<ncclComm_t> nccl_owned_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm world, CommConfig cfg) {
  return std::make_unique<NcclCommunicator>(world, cfg);
}

}  // namespace gpt::parallel
