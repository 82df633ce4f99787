// Fuzz target: checkpoint headers (core/checkpoint/). CheckpointSource takes a
// checkpoint directory with its COMPLETE marker (marker.cpp) or a single rank file
// (hdf5_file.cpp, sharded_load.cpp). An input that starts as a marker is the marker of a
// checkpoint directory; any other input chooses the attributes and pieces of a rank
// file (fuzz_hdf5_writer.h), read whole as `ckpt consolidate` reads it. A gpt::Error
// naming the file is the expected outcome of bad input; anything else is a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_hdf5_writer.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

// A rank file: the file's attributes, then up to four pieces, each a dataset with the
// attributes of sharded_checkpoint.h.
std::string write_rank_file(FuzzedDataProvider& in) {
  const std::string path = gpt::fuzz::scratch_dir() + "/rank.h5";
  gpt::fuzz::Hdf5Builder file(path);
  file.attr("magic", in, -1, "gptrain-checkpoint");
  for (const char* name : {"format_version", "rank", "world", "step", "optim.t", "data.state", "complete"})
    file.attr(name, in);
  file.attr("config", in, -1, "model.n_layer = 1\n");
  static const char* const kKinds[] = {"param", "optim.m", "optim.v"};
  const int pieces = in.ConsumeIntegralInRange(0, 4);
  for (int p = 0; p < pieces; ++p) {
    const std::string kind = kKinds[in.ConsumeIntegralInRange(0, 2)];
    const std::string name = in.ConsumeBool() ? "wte" : in.ConsumeRandomLengthString(16);
    const std::string dataset = kind + ":" + name + ":" + std::to_string(in.ConsumeIntegralInRange(0, 64));
    if (dataset.find('/') != std::string::npos || dataset.find('.') == 0) continue;  // not an HDF5 name
    const hid_t ds = file.dataset(dataset, in);
    if (ds < 0) continue;
    file.attr("name", in, ds, name);
    file.attr("kind", in, ds, kind);
    for (const char* attr : {"global_shape", "shard", "range"}) file.attr(attr, in, ds);
    H5Dclose(ds);
  }
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char kMarker[] = "gptrain-checkpoint-marker";
  const bool is_marker = size >= sizeof kMarker - 1 && std::memcmp(data, kMarker, sizeof kMarker - 1) == 0;
  try {
    if (is_marker) {
      const std::string dir = gpt::fuzz::scratch_dir() + "/ckpt_00000001";
      std::filesystem::create_directories(dir);
      gpt::fuzz::write_input(std::string("ckpt_00000001/") + gpt::kMarkerName, data, size);
      gpt::CheckpointSource src(dir);
    } else {
      FuzzedDataProvider in(data, size);
      gpt::read_global_params(write_rank_file(in));
    }
  } catch (const gpt::Error&) {
  }
  return 0;
}
