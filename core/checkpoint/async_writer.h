// One background job at a time, for asynchronous checkpoint writes: the trainer hands
// over a job (writing a rank file from a host snapshot) and keeps training; it polls
// done() each step and wait()s before starting another job or at the end of the run.
// A job's exception is kept and rethrown by wait() on the training thread, so a failed
// write still ends the run with its one-line error.
#pragma once
#include <atomic>
#include <exception>
#include <functional>
#include <thread>

namespace gpt {

class AsyncWriter {
 public:
  AsyncWriter() = default;
  ~AsyncWriter();  // joins a job still running
  AsyncWriter(const AsyncWriter&) = delete;
  AsyncWriter& operator=(const AsyncWriter&) = delete;

  void start(std::function<void()> job);  // waits for the previous job first
  bool busy() const { return thread_.joinable(); }
  bool done() const { return !busy() || done_.load(); }  // cheap: no join
  void wait();  // joins; rethrows the job's exception

 private:
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::exception_ptr error_;
};

}  // namespace gpt
