// HDF5 checkpoints: named f32 tensors with their global shapes plus scalar/int-vector
// attributes. A checkpoint is written to "<path>.tmp" and renamed when complete, so a
// crash never leaves a half-written file under a checkpoint name, and the previous
// checkpoint is never overwritten.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gpt {

constexpr int kCheckpointFormatVersion = 1;

class CheckpointWriter {
 public:
  explicit CheckpointWriter(std::string path);  // creates <path>.tmp
  ~CheckpointWriter();                          // removes the .tmp if commit() never ran
  void write(const std::string& name, const Shape& shape, const float* host);
  void write(const std::string& name, const Tensor& t);  // any device
  void attr(const std::string& name, int64_t value);
  void attr(const std::string& name, const std::vector<int64_t>& values);
  void attr(const std::string& name, const std::string& value);
  void commit();  // flush, close, rename to <path>

 private:
  std::string path_, tmp_;
  int64_t file_ = -1;
};

class CheckpointReader {
 public:
  explicit CheckpointReader(std::string path);  // checks the format version
  ~CheckpointReader();
  bool has(const std::string& name) const;
  Shape shape(const std::string& name) const;
  // Reads into host memory; the stored shape must equal `expect`.
  void read(const std::string& name, const Shape& expect, float* host) const;
  void read(const std::string& name, Tensor& t) const;  // any device
  int64_t attr_int(const std::string& name) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;
  std::string attr_str(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int64_t file_ = -1;
};

// "<dir>/ckpt_<step, 8 digits>.h5"
std::string checkpoint_path(const std::string& dir, int64_t step);
// The complete checkpoint with the highest step in dir, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);

}  // namespace gpt
