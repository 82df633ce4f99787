// The completion marker of a sharded checkpoint, and finding checkpoints in a run dir.
//
// A checkpoint directory `ckpt_<step, 8 digits>/` counts only once its marker file
// `COMPLETE` exists. Rank 0 writes it after every rank has written, fsynced and renamed
// its own file, so a crash at any moment of a save leaves either the previous
// checkpoints alone as "latest", or the new one whole. The marker is a small text file
// ("key = value" lines, so a person can read it and new keys extend it):
//   gptrain-checkpoint-marker
//   format_version = 2
//   step = 5
//   world_size = 4
//   rank_files = 4
//   layout.dp = 4
//   layout.zero1 = 1
//   layout.tp = 1
//   layout.pp = 1
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gpt {

// The parallel layout a checkpoint was written under (informational: loading never
// depends on it, every piece carries its own global identity).
struct CheckpointLayout {
  int world = 1;
  int dp = 1;
  bool zero1 = false;
  int tp = 1;
  int pp = 1;
};

struct CheckpointMarker {
  int format_version = 0;
  int64_t step = 0;
  CheckpointLayout layout;
  int rank_files = 0;
};

constexpr const char* kMarkerName = "COMPLETE";

// "<run_dir>/ckpt_<step, 8 digits>"
std::string checkpoint_dir(const std::string& run_dir, int64_t step);
// "rank_<rank, 5 digits>.h5"
std::string rank_file_name(int rank);

// Atomic: written to COMPLETE.tmp, fsynced, renamed, and the directory fsynced.
void write_marker(const std::string& ckpt_dir, const CheckpointMarker& m);
bool has_marker(const std::string& ckpt_dir);
// Throws, naming the directory, when the marker is absent ("incomplete checkpoint") or
// unreadable.
CheckpointMarker read_marker(const std::string& ckpt_dir);

// Every checkpoint directory in run_dir (complete or not), by increasing step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);
// The complete checkpoint with the highest step in run_dir, or "" when there is none;
// directories without a marker (an interrupted save) are ignored.
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace gpt
