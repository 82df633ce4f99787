// The low-level HDF5 file behind every checkpoint file: named float32 datasets plus
// int64 / string attributes on the file or on a dataset. Every HDF5, write, close,
// fsync and rename result is checked; a failure is one gpt::Error naming the file.
//
// A file carries the attributes magic = "gptrain-checkpoint" and format_version; the
// reader refuses other versions with what to do. Version 2 is the sharded layout of
// sharded_checkpoint.h (version 1 was one whole-model file per checkpoint).
//
// A file is written to "<path>.tmp", fsynced, renamed to <path> and its directory
// fsynced, so a crash never leaves a half-written file under the final name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gpt {

constexpr int kCheckpointFormatVersion = 2;

class CheckpointWriter {
 public:
  explicit CheckpointWriter(std::string path);  // creates <path>.tmp
  ~CheckpointWriter();                          // removes the .tmp if commit() never ran
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // A whole tensor in one call (any device; staged through host memory).
  void write(const std::string& name, const Shape& shape, const float* host);
  void write(const std::string& name, const Tensor& t);
  // A 1-D dataset of n elements, filled by write_range calls (hyperslabs), so a large
  // piece goes to disk in bounded chunks or straight from the caller's memory.
  void create_1d(const std::string& name, int64_t n);
  void write_range(const std::string& name, int64_t offset, const float* host, int64_t count);
  // Attributes of the file (dataset "") or of a dataset.
  void attr(const std::string& name, int64_t value, const std::string& dataset = "");
  void attr(const std::string& name, const std::vector<int64_t>& values, const std::string& dataset = "");
  void attr(const std::string& name, const std::string& value, const std::string& dataset = "");
  void commit();  // flush, close, fsync, rename to <path>, fsync the directory
  const std::string& path() const { return path_; }

 private:
  int64_t open_target(const std::string& dataset) const;
  std::string path_, tmp_;
  int64_t file_ = -1;
};

class CheckpointReader {
 public:
  // Checks magic and format version; a file HDF5 cannot open is reported as truncated
  // or corrupt.
  explicit CheckpointReader(std::string path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  bool has(const std::string& name) const;
  Shape shape(const std::string& name) const;
  std::vector<std::string> datasets() const;  // every dataset at the root, in name order
  // Reads into host memory; the stored shape must equal `expect`.
  void read(const std::string& name, const Shape& expect, float* host) const;
  void read(const std::string& name, Tensor& t) const;  // any device
  // Elements [offset, offset + count) of a 1-D dataset (a hyperslab: only those are read).
  void read_range(const std::string& name, int64_t offset, int64_t count, float* host) const;
  bool has_attr(const std::string& name, const std::string& dataset = "") const;
  int64_t attr_int(const std::string& name, const std::string& dataset = "") const;
  std::vector<int64_t> attr_ints(const std::string& name, const std::string& dataset = "") const;
  std::string attr_str(const std::string& name, const std::string& dataset = "") const;
  const std::string& path() const { return path_; }

 private:
  int64_t open_target(const std::string& dataset) const;
  std::string path_;
  int64_t file_ = -1;
};

// Creates, fills and closes a small HDF5 file in memory (the core driver, no backing
// store). HDF5 allocates its one-time state (free lists, caches: about 2 MB) on first
// use; doing that at start-up puts it in the training peak, so a save's measured peak
// growth is what the save itself needs.
void hdf5_warm_up();

// fsyncs a file or directory; throws naming it when that fails.
void fsync_path(const std::string& path);

}  // namespace gpt
