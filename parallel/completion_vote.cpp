#include "parallel/completion_vote.h"

#include <thread>

#include "core/error.h"

namespace gpt::parallel {

CompletionVote::CompletionVote(MPI_Comm world, int world_size, double timeout_s)
    : size_(world_size), timeout_s_(timeout_s), all_(size_t(2 * world_size), 0) {
  if (size_ <= 1) return;
  int level = 0;
  MPI_Query_thread(&level);
  GPT_CHECK(level >= MPI_THREAD_MULTIPLE,
            "checkpoint saves under several ranks need MPI_THREAD_MULTIPLE (their completion vote runs "
            "beside the communicator's thread); this MPI library provides less");
  MPI_Comm_dup(world, &comm_);
  MPI_Comm_rank(comm_, &rank_);
}

CompletionVote::~CompletionVote() {
  // A vote still in flight at exit is abandoned (the job is ending with an error).
  if (comm_ != MPI_COMM_NULL && !active_) MPI_Comm_free(&comm_);
}

void CompletionVote::start(bool ok, int64_t value, const std::string& what) {
  GPT_CHECK(!active_, "CompletionVote::start while a vote is in flight");
  mine_[0] = ok ? 1 : 0;
  mine_[1] = value;
  what_ = what;
  started_ = std::chrono::steady_clock::now();
  active_ = true;
  if (size_ <= 1) {
    all_.assign(mine_, mine_ + 2);
    return;
  }
  MPI_Iallgather(mine_, 2, MPI_INT64_T, all_.data(), 2, MPI_INT64_T, comm_, &request_);
}

bool CompletionVote::test() {
  if (!active_) return true;
  int done = 1;
  if (size_ > 1) MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
  if (done) {
    active_ = false;
    return true;
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  if (waited > timeout_s_)
    fail("rank " + std::to_string(rank_) + ": " + what_ + ": not every rank finished within " +
         "run.checkpoint_timeout_s = " + std::to_string(timeout_s_) + " s (a rank died or its disk stalled)");
  return false;
}

void CompletionVote::wait() {
  while (!test()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

bool CompletionVote::all_ok() const {
  for (int r = 0; r < size_; ++r)
    if (all_[size_t(2 * r)] != 1) return false;
  return true;
}

std::vector<int64_t> CompletionVote::values() const {
  std::vector<int64_t> v;
  for (int r = 0; r < size_; ++r) v.push_back(all_[size_t(2 * r + 1)]);
  return v;
}

}  // namespace gpt::parallel
