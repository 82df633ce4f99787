// Writes an HDF5 file whose attributes and datasets a fuzz input chooses, through HDF5's
// own API. The shard and checkpoint targets use it so that the fuzzer varies what our
// readers check (which attributes exist, their types, shapes and values; the datasets'
// types, ranks, extents and contents) inside a file libhdf5 itself wrote. Mutating the
// raw bytes of the file instead mostly exercises libhdf5's on-disk parser, which
// crashes on damaged files in ways our code cannot prevent (tests/fuzz/README.md).
#pragma once
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>

#include <string>

namespace gpt::fuzz {

class Hdf5Builder {
 public:
  explicit Hdf5Builder(const std::string& path);  // creates (truncates) the file
  ~Hdf5Builder();                                  // closes it
  Hdf5Builder(const Hdf5Builder&) = delete;
  Hdf5Builder& operator=(const Hdf5Builder&) = delete;

  // An attribute `name` on `obj` (the file when obj < 0), of a type and value the
  // input picks: absent, int64 / int32 / uint64 / double scalar, int64 vector, fixed or
  // variable-length string, several strings; `usual` is the string a well-formed file
  // holds, offered to the input as one choice.
  void attr(const std::string& name, FuzzedDataProvider& in, hid_t obj = -1, const std::string& usual = "");
  // A dataset `name` of an element type, rank, extent, layout and contents the input
  // picks (or none); returns it open (the caller closes it) or -1 when absent.
  hid_t dataset(const std::string& name, FuzzedDataProvider& in);
  hid_t file() const { return file_; }

 private:
  hid_t file_ = -1;
};

}  // namespace gpt::fuzz
