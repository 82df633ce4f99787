// Fuzz target: a token shard's header and datasets (data/shard.cpp). The input chooses
// every attribute and both datasets of an HDF5 file (fuzz_hdf5_writer.h), which is
// then opened as the sampler opens a shard and its first tokens read. The documented
// failure is a std::runtime_error naming the shard; anything else is a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "data/shard.h"
#include "tests/fuzz/fuzz_hdf5_writer.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string path = gpt::fuzz::scratch_dir() + "/shard.h5";
  {
    gpt::fuzz::Hdf5Builder file(path);
    file.attr("format", in, -1, gpt::data::kShardFormat);
    for (const char* name : {"format_version", "vocab_size", "eot_token", "token_count", "doc_count"})
      file.attr(name, in);
    file.attr("tokenizer", in, -1, "gpt2-bpe:0123456789abcdef");
    file.attr("source", in, -1, "web");
    for (const char* name : {"tokens", "doc_offsets"}) {
      const hid_t ds = file.dataset(name, in);
      if (ds >= 0) H5Dclose(ds);
    }
  }
  try {
    gpt::data::ShardReader reader(path, "", 0);
    const gpt::data::ShardInfo& info = reader.info();
    std::vector<int32_t> ids(size_t(std::min<int64_t>(info.token_count, 4096)));
    reader.read(0, int64_t(ids.size()), ids.data());
    // What the reader promises of the ids it returns.
    for (int32_t id : ids)
      if (id < 0 || id >= info.meta.vocab_size) std::abort();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
