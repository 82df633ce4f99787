// The trainer's side of sharded checkpoints (core/checkpoint/sharded_checkpoint.h):
// every rank writes its own rank file, all ranks agree they are done (a CompletionVote
// with its own run.checkpoint_timeout_s, so a slow disk never trips the communicator's
// timeout), then rank 0 writes the marker, logs, and prunes old checkpoints.
//
// Synchronous saves write straight from the live buffers (host F32 memory goes to HDF5
// as it is, other memory through a staging buffer of one DP bucket), so a save adds at
// most one bucket to the process's peak memory; each rank measures its peak RSS growth
// across the write and rank 0 logs every rank's number in a "checkpoint" line of
// metrics.jsonl. With run.async_checkpoint the owned state is first copied to host
// memory and written by a background thread; poll() (each step) and finish() (before
// the next save and at the end of the run) complete it.
#pragma once
#include <memory>
#include <string>

#include "core/checkpoint/async_writer.h"
#include "core/checkpoint/sharded_checkpoint.h"
#include "launch/config.h"
#include "launch/metrics_log.h"
#include "parallel/completion_vote.h"

namespace gpt {

class CheckpointSaver {
 public:
  // Collective over MPI_COMM_WORLD when world > 1 (sets up the completion vote).
  CheckpointSaver(const TrainConfig& cfg, int rank, CheckpointLayout layout, int64_t staging_elems);
  void set_log(MetricsLog* log) { log_ = log; }  // rank 0's metrics.jsonl

  // Collective: every rank calls it for the same step with the state it owns.
  void save(const OwnedState& owned, int64_t step);
  void poll();    // advances an asynchronous save; cheap when there is nothing to do
  void finish();  // completes a save in flight
  const std::string& last_complete() const { return last_complete_; }
  void set_last_complete(const std::string& dir) { last_complete_ = dir; }

 private:
  void start_vote();
  void complete();
  void prune(int64_t step);

  TrainConfig cfg_;
  int rank_;
  CheckpointLayout layout_;
  SaveOptions opt_;
  MetricsLog* log_ = nullptr;
  parallel::CompletionVote vote_;
  AsyncWriter writer_;
  bool pending_ = false, voted_ = false;
  int64_t step_ = 0;
  std::string dir_, last_complete_;
  int64_t growth_bytes_ = 0;
  double write_s_ = 0;
};

// The process's peak resident memory so far, in bytes (getrusage's ru_maxrss).
int64_t peak_rss_bytes();

}  // namespace gpt
