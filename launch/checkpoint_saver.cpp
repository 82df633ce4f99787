#include "launch/checkpoint_saver.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int64_t peak_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;  // kilobytes on Linux
}

CheckpointSaver::CheckpointSaver(const TrainConfig& cfg, int rank, CheckpointLayout layout, int64_t staging_elems)
    : cfg_(cfg),
      rank_(rank),
      layout_(layout),
      opt_{staging_elems, cfg.debug_save_delay_ms},
      vote_(MPI_COMM_WORLD, layout.world, cfg.checkpoint_timeout_s) {
  hdf5_warm_up();
}

void CheckpointSaver::save(const OwnedState& owned, int64_t step) {
  finish();  // a second save waits for the first
  step_ = step;
  dir_ = checkpoint_dir(cfg_.run_dir, step);
  fs::create_directories(dir_);
  const std::string path = (fs::path(dir_) / rank_file_name(rank_)).string();
  const int64_t before = peak_rss_bytes();
  const auto t0 = Clock::now();
  pending_ = true;
  if (cfg_.async_checkpoint) {
    // The snapshot is the one copy an asynchronous save needs: training goes on
    // updating the live buffers while the thread writes.
    auto snap = std::make_shared<OwnedState>(snapshot_to_host(owned));
    growth_bytes_ = peak_rss_bytes() - before;
    write_s_ = 0;
    writer_.start([this, snap, path, opt = opt_] {
      const auto t1 = Clock::now();
      write_rank_file(path, *snap, opt);
      write_s_ = std::chrono::duration<double>(Clock::now() - t1).count();  // read after the join
    });
    return;
  }
  write_rank_file(path, owned, opt_);
  write_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
  growth_bytes_ = peak_rss_bytes() - before;
  start_vote();
  vote_.wait();
  complete();
}

void CheckpointSaver::start_vote() {
  vote_.start(true, growth_bytes_, "checkpoint " + dir_);
  voted_ = true;
}

void CheckpointSaver::poll() {
  if (!pending_) return;
  if (!voted_) {
    if (!writer_.done()) return;
    writer_.wait();  // rethrows a failed write
    start_vote();
  }
  if (vote_.test()) complete();
}

void CheckpointSaver::finish() {
  if (!pending_) return;
  if (!voted_) {
    writer_.wait();
    start_vote();
  }
  vote_.wait();
  complete();
}

void CheckpointSaver::complete() {
  pending_ = voted_ = false;
  GPT_CHECK(vote_.all_ok(), "checkpoint " + dir_ + ": a rank failed to write its file");
  last_complete_ = dir_;
  if (rank_ != 0) return;
  write_marker(dir_, CheckpointMarker{kCheckpointFormatVersion, step_, layout_, layout_.world});
  std::printf("checkpoint: %s\n", dir_.c_str());
  if (log_) {
    std::string growth = "[";
    for (int64_t g : vote_.values()) growth += (growth.size() > 1 ? "," : "") + std::to_string(g);
    log_->write("checkpoint", MetricsLog::Line()
                                  .num("step", double(step_))
                                  .str("dir", dir_)
                                  .num("async", cfg_.async_checkpoint ? 1 : 0)
                                  .num("bucket_bytes", double(opt_.staging_elems) * sizeof(float))
                                  .raw("rss_growth_bytes", growth + "]")
                                  .num("write_s", write_s_));
  }
  prune(step_);
}

// Keeps the newest run.keep complete checkpoints; deletes only directories older than
// the one just completed (complete or interrupted), never it or anything newer.
void CheckpointSaver::prune(int64_t step) {
  if (cfg_.keep_checkpoints <= 0) return;
  auto all = list_checkpoints(cfg_.run_dir);
  int kept = 1;  // the one just completed
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->first >= step) continue;
    if (has_marker(it->second) && kept < cfg_.keep_checkpoints) {
      ++kept;
      continue;
    }
    // The marker first: a deletion cut short leaves an incomplete directory, never a
    // "complete" one with files missing.
    std::error_code ec;
    fs::remove(fs::path(it->second) / kMarkerName, ec);
    fs::remove_all(it->second, ec);
  }
}

}  // namespace gpt
