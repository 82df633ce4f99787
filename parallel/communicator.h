// Communicator: one interface for the collectives every parallelism needs, on
// gpt::Tensor, over named groups, asynchronous with a handle to wait on. MPI implements
// it for host tensors (always available; mpi_communicator.cpp), NCCL for device tensors
// (nccl_communicator.cpp, built with CUDA). Communicators are created by the trainer
// and passed explicitly: there is no global or default instance.
//
// Ordering rule (as in MPI and NCCL): every member of a group issues the group's
// collectives in the same order. Calls return at once; the operation runs on the
// implementation's progress engine (a comm thread for MPI, a CUDA stream for NCCL) and
// a tensor given to a call must not be touched until its handle's wait() returns.
//
// Traffic accounting: each call adds to its group's counter the bytes THIS rank sends
// under the standard ring/chain algorithm for that operation, whatever algorithm the
// library really picks, so measured bytes compare 1:1 with the analytic volume.
// With n = group size, S = tensor bytes (for allreduce/broadcast) or the whole
// buffer's bytes (reduce_scatter/allgather), own = this rank's chunk bytes:
//   allreduce       2 (n-1)/n * S        (ring reduce-scatter + ring all-gather)
//   reduce_scatter  S - own              ((n-1)/n * S when chunks are equal)
//   allgather       S - own              ((n-1)/n * S when chunks are equal)
//   all_to_all      sum of send bytes to the other ranks (the self chunk is a copy)
//   broadcast       S on every rank but the chain's last ((root - 1) mod n), else 0
//   send            S;   recv 0;   barrier 0
// Counters are per group name and per operation; n = 1 counts 0 everywhere.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <mpi.h>

#include "core/tensor.h"

struct ncclComm;  // from nccl.h; kept opaque so this header needs no CUDA

namespace gpt::parallel {

// A named set of world ranks plus the library handles that address it. Created by a
// Communicator (make_group), which owns and frees the handles; copies are cheap views.
struct Group {
  std::string name;        // "dp", "tp", ... : names counters and error messages
  std::vector<int> ranks;  // world ranks, in group order
  int rank = -1;           // this process's index in `ranks`
  MPI_Comm mpi_comm = MPI_COMM_NULL;
  ncclComm* nccl_comm = nullptr;  // set by the NCCL communicator only

  int size() const { return int(ranks.size()); }
  std::string describe() const;  // "'dp' [0 2 4 6]"
};

enum class ReduceOp { sum, avg };  // avg = sum, then scaled by 1/n before wait() returns

// Completion of one asynchronous call. wait() blocks until the result is in place;
// a default-constructed handle is already complete.
class CommHandle {
 public:
  struct State;
  CommHandle() = default;
  explicit CommHandle(std::shared_ptr<State> s) : state_(std::move(s)) {}
  void wait();
  bool done() const;

 private:
  std::shared_ptr<State> state_;
};

struct TrafficCount {
  double bytes = 0;  // per rank, by the ring formulas above
  int64_t calls = 0;
};

// Thread-safe per-(group, operation) byte counters.
class TrafficCounter {
 public:
  void add(const std::string& group, const std::string& op, double bytes);
  TrafficCount get(const std::string& group, const std::string& op) const;
  double group_bytes(const std::string& group) const;  // all operations
  void reset();
  std::string report() const;  // one line per (group, op)

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, TrafficCount> counts_;
};

// The bytes one call counts (see the table above); exposed so tests and benchmarks
// state the analytic volume with the same formula the counters use.
double ring_allreduce_bytes(double bytes, int n);
// For make_group implementations: fills g.ranks and g.rank with the block of `partition`
// that holds `rank`, and returns that block's index (the split colour). Throws naming
// the group when the rank is in none or in two of the blocks.
int place_in_partition(Group& g, const std::vector<std::vector<int>>& partition, int rank);
double ring_gather_scatter_bytes(double total_bytes, double own_bytes, int n);

struct CommConfig {
  // A collective still incomplete after this many seconds aborts the whole job with a
  // message naming the rank, group and operation, instead of hanging forever.
  double timeout_s = 300.0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int world_rank() const = 0;
  virtual int world_size() const = 0;
  virtual Device device() const = 0;  // where tensors given to this communicator live

  // Collective over the whole world: every rank passes the same partition of the world
  // into groups (e.g. Topology::groups(kind)) and gets back the group it belongs to.
  virtual Group make_group(const std::string& name,
                           const std::vector<std::vector<int>>& partition) = 0;
  Group world_group();  // every rank, named "world"

  // Element-wise reduction of `t` across the group, in place.
  virtual CommHandle allreduce(Tensor& t, const Group& g, ReduceOp op = ReduceOp::sum) = 0;
  CommHandle allreduce_avg(Tensor& t, const Group& g) { return allreduce(t, g, ReduceOp::avg); }
  // `in` holds counts[0] + ... + counts[n-1] elements; group rank i receives the sum of
  // chunk i into `out` (counts[i] elements). `in` and `out` must not overlap.
  virtual CommHandle reduce_scatter(const Tensor& in, Tensor& out,
                                    const std::vector<int64_t>& counts, const Group& g) = 0;
  // In place: `buf` holds the chunks of every rank back to back (counts[i] elements for
  // group rank i); on return every rank has every chunk.
  virtual CommHandle allgather(Tensor& buf, const std::vector<int64_t>& counts,
                               const Group& g) = 0;
  // Variable-count all-to-all: this rank sends send_counts[j] consecutive elements of
  // `in` to group rank j and receives recv_counts[j] from it into `out`, in rank order.
  virtual CommHandle all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                                Tensor& out, const std::vector<int64_t>& recv_counts,
                                const Group& g) = 0;
  // Point to point; `peer` is a group rank. A send and its recv use the same tag.
  virtual CommHandle send(const Tensor& t, int peer, const Group& g, int tag = 0) = 0;
  virtual CommHandle recv(Tensor& t, int peer, const Group& g, int tag = 0) = 0;
  virtual CommHandle broadcast(Tensor& t, int root, const Group& g) = 0;
  virtual CommHandle barrier(const Group& g) = 0;

  TrafficCounter& traffic() { return traffic_; }

 protected:
  TrafficCounter traffic_;
};

// Initialises MPI for the life of the object with the thread level the MPI
// communicator needs (MPI_THREAD_MULTIPLE requested; SERIALIZED accepted because only
// the comm thread calls MPI once a communicator exists). Create it first, destroy last.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int thread_level() const { return provided_; }

 private:
  int provided_ = 0;
  bool owns_ = false;
};

// The communicator for host tensors. `world` is usually MPI_COMM_WORLD.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm world, CommConfig cfg = {});
#if defined(GPT_WITH_NCCL)
// The communicator for device tensors; bootstraps its NCCL communicators through MPI on
// `world` (one GPU per rank, already selected with cudaSetDevice).
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm world, CommConfig cfg = {});
#endif

}  // namespace gpt::parallel
