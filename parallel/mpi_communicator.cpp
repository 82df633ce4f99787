// MPI communicator for host tensors. One comm thread is the only caller of MPI once the
// communicator exists: it issues each queued call as a non-blocking MPI operation in
// queue order (which keeps every rank's collective order identical), then drives
// progress with MPI_Testsome while the training thread computes. Open MPI progresses
// non-blocking collectives only inside MPI calls, so without this thread a bucket's
// all-reduce would not move until backward ended. The thread also owns the timeout.
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <functional>
#include <thread>

#include "core/error.h"
#include "core/ops.h"
#include "parallel/comm_handle_state.h"
#include "parallel/communicator.h"

namespace gpt::parallel {
namespace {

using Clock = std::chrono::steady_clock;

// One queued call: `start` issues it (a non-blocking MPI call filling `request`, or a
// blocking one leaving MPI_REQUEST_NULL); `finish` runs on completion (e.g. avg scaling).
struct Task {
  std::function<void(MPI_Request*)> start;
  std::function<void()> finish;
  std::shared_ptr<CommHandle::State> state;
  MPI_Request request = MPI_REQUEST_NULL;
  Clock::time_point started;
};

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT;
    case DType::BF16: return MPI_UINT16_T;  // moved as raw bits; never reduced
  }
  return MPI_DATATYPE_NULL;
}

int as_int_count(int64_t n, const char* op) {
  GPT_CHECK(0 <= n && n <= INT_MAX, std::string(op) + ": count " + std::to_string(n) +
                                        " does not fit MPI's int counts; use smaller buckets");
  return int(n);
}

std::vector<int> int_counts(const std::vector<int64_t>& counts, const char* op) {
  std::vector<int> out;
  for (int64_t c : counts) out.push_back(as_int_count(c, op));
  return out;
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> d(counts.size(), 0);
  for (size_t i = 1; i < counts.size(); ++i) d[i] = d[i - 1] + counts[i - 1];
  return d;
}

int64_t sum_of(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm world, CommConfig cfg) : cfg_(cfg) {
    int level = 0;
    MPI_Query_thread(&level);
    GPT_CHECK(level >= MPI_THREAD_SERIALIZED,
              "MPI communicator needs MPI_THREAD_SERIALIZED or better; create an MpiSession "
              "(MPI_Init_thread) before the communicator");
    MPI_Comm_dup(world, &world_);  // our own context: user traffic on `world` cannot match ours
    MPI_Comm_rank(world_, &rank_);
    MPI_Comm_size(world_, &size_);
    thread_ = std::thread([this] { run(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  int world_rank() const override { return rank_; }
  int world_size() const override { return size_; }
  Device device() const override { return Device::CPU; }

  Group make_group(const std::string& name,
                   const std::vector<std::vector<int>>& partition) override {
    Group g;
    g.name = name;
    const int color = place_in_partition(g, partition, rank_);
    MPI_Comm comm = MPI_COMM_NULL;
    // Blocking and collective over the world, but run on the comm thread all the same so
    // MPI sees a single caller (enough for MPI_THREAD_SERIALIZED).
    enqueue("make_group", g, 0.0, [&, color](MPI_Request*) {
      MPI_Comm_split(world_, color, g.rank, &comm);
      owned_.push_back(comm);
    }).wait();
    g.mpi_comm = comm;
    return g;
  }

  CommHandle allreduce(Tensor& t, const Group& g, ReduceOp op) override {
    GPT_CHECK(t.dtype == DType::F32 || t.dtype == DType::I32,
              "allreduce on group " + g.describe() + ": host reductions need F32 or I32");
    check_host(t, "allreduce", g);
    const int n = as_int_count(t.numel(), "allreduce");
    Tensor buf = t;
    std::function<void()> finish;
    if (op == ReduceOp::avg) {
      GPT_CHECK(t.dtype == DType::F32, "allreduce avg needs an F32 tensor");
      // A plain loop on the comm thread: the ops table's scale would start a second
      // OpenMP team beside the one running backward, oversubscribing the cores.
      finish = [buf, size = g.size()]() mutable {
        float* p = buf.f32();
        const float s = 1.f / float(size);
        for (int64_t i = 0, n = buf.numel(); i < n; ++i) p[i] *= s;
      };
    }
    return enqueue("allreduce", g, ring_allreduce_bytes(double(t.nbytes()), g.size()),
                   [buf, n, comm = g.mpi_comm](MPI_Request* r) {
                     MPI_Iallreduce(MPI_IN_PLACE, buf.raw(), n, mpi_type(buf.dtype), MPI_SUM,
                                    comm, r);
                   },
                   std::move(finish));
  }

  CommHandle reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts,
                            const Group& g) override {
    check_host(in, "reduce_scatter", g);
    check_host(out, "reduce_scatter", g);
    check_counts(counts, in.numel(), "reduce_scatter", g);
    GPT_CHECK(out.numel() >= counts[size_t(g.rank)] && in.dtype == out.dtype &&
                  in.dtype != DType::BF16,
              "reduce_scatter on group " + g.describe() + ": output too small or bad dtype");
    auto ic = std::make_shared<std::vector<int>>(int_counts(counts, "reduce_scatter"));
    const double es = double(dtype_size(in.dtype));
    const double bytes = ring_gather_scatter_bytes(double(in.nbytes()),
                                                   double(counts[size_t(g.rank)]) * es, g.size());
    return enqueue("reduce_scatter", g, bytes,
                   [in, out, ic, comm = g.mpi_comm](MPI_Request* r) {
                     MPI_Ireduce_scatter(in.raw(), out.raw(), ic->data(), mpi_type(in.dtype),
                                         MPI_SUM, comm, r);
                   });
  }

  CommHandle allgather(Tensor& buf, const std::vector<int64_t>& counts, const Group& g) override {
    check_host(buf, "allgather", g);
    check_counts(counts, buf.numel(), "allgather", g);
    auto ic = std::make_shared<std::vector<int>>(int_counts(counts, "allgather"));
    auto displs = std::make_shared<std::vector<int>>(displacements(*ic));
    const double es = double(dtype_size(buf.dtype));
    const double bytes = ring_gather_scatter_bytes(double(buf.nbytes()),
                                                   double(counts[size_t(g.rank)]) * es, g.size());
    return enqueue("allgather", g, bytes,
                   [buf, ic, displs, comm = g.mpi_comm](MPI_Request* r) {
                     MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf.raw(), ic->data(),
                                     displs->data(), mpi_type(buf.dtype), comm, r);
                   });
  }

  CommHandle all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts, Tensor& out,
                        const std::vector<int64_t>& recv_counts, const Group& g) override {
    check_host(in, "all_to_all", g);
    check_host(out, "all_to_all", g);
    check_counts(send_counts, -1, "all_to_all", g);
    check_counts(recv_counts, -1, "all_to_all", g);
    GPT_CHECK(sum_of(send_counts) <= in.numel() && sum_of(recv_counts) <= out.numel() &&
                  in.dtype == out.dtype,
              "all_to_all on group " + g.describe() + ": counts exceed the tensors");
    auto sc = std::make_shared<std::vector<int>>(int_counts(send_counts, "all_to_all"));
    auto rc = std::make_shared<std::vector<int>>(int_counts(recv_counts, "all_to_all"));
    auto sd = std::make_shared<std::vector<int>>(displacements(*sc));
    auto rd = std::make_shared<std::vector<int>>(displacements(*rc));
    const double es = double(dtype_size(in.dtype));
    const double bytes = double(sum_of(send_counts) - send_counts[size_t(g.rank)]) * es;
    return enqueue("all_to_all", g, bytes,
                   [in, out, sc, rc, sd, rd, comm = g.mpi_comm](MPI_Request* r) {
                     MPI_Ialltoallv(in.raw(), sc->data(), sd->data(), mpi_type(in.dtype),
                                    out.raw(), rc->data(), rd->data(), mpi_type(out.dtype), comm,
                                    r);
                   });
  }

  CommHandle send(const Tensor& t, int peer, const Group& g, int tag) override {
    check_host(t, "send", g);
    check_peer(peer, "send", g);
    const int n = as_int_count(t.numel(), "send");
    return enqueue("send", g, double(t.nbytes()),
                   [t, n, peer, tag, comm = g.mpi_comm](MPI_Request* r) {
                     MPI_Isend(t.raw(), n, mpi_type(t.dtype), peer, tag, comm, r);
                   },
                   {}, peer);
  }

  CommHandle recv(Tensor& t, int peer, const Group& g, int tag) override {
    check_host(t, "recv", g);
    check_peer(peer, "recv", g);
    const int n = as_int_count(t.numel(), "recv");
    return enqueue("recv", g, 0.0, [t, n, peer, tag, comm = g.mpi_comm](MPI_Request* r) {
      MPI_Irecv(t.raw(), n, mpi_type(t.dtype), peer, tag, comm, r);
    }, {}, peer);
  }

  CommHandle broadcast(Tensor& t, int root, const Group& g) override {
    check_host(t, "broadcast", g);
    check_peer(root, "broadcast", g);
    const int n = as_int_count(t.numel(), "broadcast");
    const int last = (root + g.size() - 1) % g.size();  // the chain's end forwards nothing
    const double bytes = g.size() > 1 && g.rank != last ? double(t.nbytes()) : 0.0;
    return enqueue("broadcast", g, bytes, [t, n, root, comm = g.mpi_comm](MPI_Request* r) {
      MPI_Ibcast(t.raw(), n, mpi_type(t.dtype), root, comm, r);
    });
  }

  CommHandle barrier(const Group& g) override {
    return enqueue("barrier", g, 0.0,
                   [comm = g.mpi_comm](MPI_Request* r) { MPI_Ibarrier(comm, r); });
  }

 private:
  void check_host(const Tensor& t, const char* op, const Group& g) const {
    GPT_CHECK(t.defined() && t.device == Device::CPU,
              std::string(op) + " on group " + g.describe() +
                  ": the MPI communicator takes host tensors (use the NCCL one for GPU)");
    GPT_CHECK(g.mpi_comm != MPI_COMM_NULL,
              std::string(op) + ": group " + g.describe() + " was not made by make_group");
  }
  void check_peer(int peer, const char* op, const Group& g) const {
    GPT_CHECK(0 <= peer && peer < g.size(), std::string(op) + ": peer " + std::to_string(peer) +
                                                " outside group " + g.describe());
  }
  void check_counts(const std::vector<int64_t>& counts, int64_t total, const char* op,
                    const Group& g) const {
    GPT_CHECK(int(counts.size()) == g.size(),
              std::string(op) + " on group " + g.describe() + ": " +
                  std::to_string(counts.size()) + " counts for " + std::to_string(g.size()) +
                  " ranks");
    GPT_CHECK(total < 0 || sum_of(counts) == total,
              std::string(op) + " on group " + g.describe() + ": counts sum to " +
                  std::to_string(sum_of(counts)) + ", tensor holds " + std::to_string(total));
  }

  CommHandle enqueue(const char* op, const Group& g, double bytes,
                     std::function<void(MPI_Request*)> start,
                     std::function<void()> finish = {}, int peer = -1) {
    auto task = std::make_shared<Task>();
    task->start = std::move(start);
    task->finish = std::move(finish);
    task->state = std::make_shared<CommHandle::State>();
    task->state->what = describe_call(rank_, op, g, peer);
    task->state->timeout_s = cfg_.timeout_s;
    if (std::string(op) != "make_group") traffic_.add(g.name, op, bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(task);
    }
    cv_.notify_one();
    return CommHandle(task->state);
  }

  // The comm thread: issue queued calls in order, test the ones in flight, enforce the
  // timeout. Sleeps briefly when nothing moved so polling does not eat a core.
  void run() {
    std::vector<std::shared_ptr<Task>> in_flight;
    std::vector<MPI_Request> requests;
    std::vector<int> indices;
    for (;;) {
      std::deque<std::shared_ptr<Task>> fresh;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (in_flight.empty())
          cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty() && in_flight.empty()) break;
        fresh.swap(queue_);
      }
      for (auto& t : fresh) {
        t->started = Clock::now();
        t->start(&t->request);
        in_flight.push_back(t);
      }
      requests.clear();
      for (auto& t : in_flight) requests.push_back(t->request);
      int completed = 0;
      indices.resize(requests.size());
      // Completed requests come back as MPI_REQUEST_NULL, and so do blocking tasks.
      MPI_Testsome(int(requests.size()), requests.data(), &completed, indices.data(),
                   MPI_STATUSES_IGNORE);
      std::vector<std::shared_ptr<Task>> still;
      for (size_t i = 0; i < in_flight.size(); ++i) {
        auto& t = in_flight[i];
        if (requests[i] == MPI_REQUEST_NULL) {
          if (t->finish) t->finish();
          t->state->complete();
        } else {
          t->request = requests[i];
          const double waited = std::chrono::duration<double>(Clock::now() - t->started).count();
          if (waited > cfg_.timeout_s) abort_on_timeout(t->state->what, waited);
          still.push_back(t);
        }
      }
      const bool progressed = still.size() < in_flight.size() || !fresh.empty();
      in_flight.swap(still);
      if (!in_flight.empty() && !progressed)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    for (MPI_Comm& c : owned_) MPI_Comm_free(&c);
    MPI_Comm_free(&world_);
  }

  CommConfig cfg_;
  MPI_Comm world_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Comm> owned_;  // touched by the comm thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm world, CommConfig cfg) {
  return std::make_unique<MpiCommunicator>(world, cfg);
}

}  // namespace gpt::parallel
