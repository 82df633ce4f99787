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

}  // namespace gpt::parallel
