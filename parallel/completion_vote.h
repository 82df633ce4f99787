// "Every rank has finished": a non-blocking agreement over the whole world with its own
// timeout, for checkpoint saves. Writing a big rank file can take far longer than
// parallel.timeout_s allows a collective, so the vote does not go through the
// Communicator (whose progress engine enforces that timeout on every call): it uses its
// own duplicate of the world communicator and MPI_Iallgather, polled with MPI_Test from
// the caller's thread (which needs MPI_THREAD_MULTIPLE beside the comm thread).
//
// Each rank contributes (ok, value); once complete, every rank sees every rank's pair,
// so rank 0 can both write the marker and log each rank's measurement.
#pragma once
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace gpt::parallel {

class CompletionVote {
 public:
  // Collective over `world` when it has more than one rank (duplicates it).
  CompletionVote(MPI_Comm world, int world_size, double timeout_s);
  ~CompletionVote();
  CompletionVote(const CompletionVote&) = delete;
  CompletionVote& operator=(const CompletionVote&) = delete;

  // Contributes this rank's (ok, value); `what` names the vote in a timeout error.
  void start(bool ok, int64_t value, const std::string& what);
  bool active() const { return active_; }
  // True once every rank has contributed (cheap when not). Throws gpt::Error naming the
  // rank and `what` after timeout_s.
  bool test();
  void wait();  // test() until complete, sleeping briefly between polls
  // After completion: whether every rank said ok, and every rank's value by world rank.
  bool all_ok() const;
  std::vector<int64_t> values() const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int size_ = 1, rank_ = 0;
  double timeout_s_;
  bool active_ = false;
  MPI_Request request_ = MPI_REQUEST_NULL;
  int64_t mine_[2] = {0, 0};
  std::vector<int64_t> all_;
  std::string what_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace gpt::parallel
