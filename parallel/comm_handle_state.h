// Internal: the shared completion state behind a CommHandle, used by both
// communicator implementations. Not part of the public API.
#pragma once
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "parallel/communicator.h"

namespace gpt::parallel {

struct CommHandle::State {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string what;          // "rank 0: allreduce on group 'dp' [0 1]" for timeouts
  double timeout_s = 300.0;  // how long wait() trusts the progress engine
  // Device communicators finish by synchronising a stream instead of being signalled.
  std::function<void()> wait_hook;

  void complete() {
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    cv.notify_all();
  }
};

// Prints "gpt comm timeout: <what> ..." to stderr and MPI_Aborts the world.
[[noreturn]] void abort_on_timeout(const std::string& what, double waited_s);
// What a call is, for the timeout message: "rank 3 (pipeline stage 1): recv from
// pipeline stage 0 on group 'pp' [1 3]" (peer: the group rank of a send's or receive's
// other end, -1 for collectives). A rank's index in a tp/dp/pp group is named as what it
// is there, so the message says which stage or shard stopped.
std::string describe_call(int world_rank, const std::string& op, const Group& g, int peer = -1);

}  // namespace gpt::parallel
