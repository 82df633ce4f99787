// Shared helpers for the data tests: a temporary directory and synthetic shards.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace gpt::data::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
struct TempDir {
  std::string path;
  TempDir();
  ~TempDir();
  std::string file(const std::string& name) const { return path + "/" + name; }
};

ShardMeta test_meta(const std::string& source = "src", int64_t vocab = 50257,
                    const std::string& tokenizer = "test-tokenizer");

// Writes a shard of about `tokens` tokens: documents of pseudo-random lengths (1..max_doc)
// whose ids are pseudo-random in [0, vocab) but never the EOS id. Returns token count.
int64_t write_synthetic_shard(const std::string& path, const ShardMeta& meta, int64_t tokens,
                              uint64_t seed, int max_doc = 300);

// Writes a mixture config with one [source.NAME] per entry, globs relative to the file.
struct ConfigSource {
  std::string name, glob, valid_glob, weight;
};
void write_config(const std::string& path, const std::vector<ConfigSource>& sources);

// Overwrites an int64 attribute / a token of an existing shard (to corrupt it on purpose).
void set_shard_attr(const std::string& path, const char* name, int64_t value);
void set_shard_token(const std::string& path, int64_t offset, uint32_t value);
void set_shard_offset(const std::string& path, int64_t doc, int64_t value);
// Replaces attribute `name` by a 1-D one of `count` values of HDF5 type `type` (hid_t).
void replace_shard_attr(const std::string& path, const char* name, int64_t type, uint64_t count,
                        const void* values);

}  // namespace gpt::data::testing
