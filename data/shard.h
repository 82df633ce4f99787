// Token shards: one HDF5 file per shard, the unit that `prepare` writes and the
// sampler reads.
//
// Layout (format "gptrain-shard", version 1):
//   dataset "tokens"      1-D, uint16 when vocab_size <= 65536 else uint32, chunked.
//                         Documents are concatenated, each followed by one EOS token.
//   dataset "doc_offsets" 1-D int64: start offset of each document in "tokens".
//   attributes            format (string), format_version (int64), tokenizer (identity
//                         string), vocab_size, eot_token, source (string),
//                         token_count, doc_count (int64).
// A shard is written to "<path>.tmp" and renamed to <path> only when complete, so a
// file at a final name is never half-written; token_count/doc_count are written last
// and checked against the dataset extents on open to catch truncation.
//
// HDF5 as packaged by Debian is not thread-safe, and the sampler reads on background
// threads, so every HDF5 call in data/ goes through one process-wide lock.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gpt::data {

inline constexpr const char* kShardFormat = "gptrain-shard";
inline constexpr int64_t kShardFormatVersion = 1;

struct ShardMeta {
  std::string tokenizer;   // identity string of the tokenizer that made the tokens
  int64_t vocab_size = 0;  // token ids are < vocab_size
  int64_t eot_token = -1;  // document separator
  std::string source;      // name of the corpus the shard came from
};

// What the header of a shard says; reading it costs one open and a few attribute reads.
struct ShardInfo {
  std::string path;
  ShardMeta meta;
  int64_t token_count = 0;
  int64_t doc_count = 0;
};

// Reads and checks a shard's header: format and version, identity and vocab (when the
// expected values are non-empty / > 0), and that the attribute counts match the dataset
// extents. Throws std::runtime_error naming the file.
ShardInfo shard_read_info(const std::string& path, const std::string& expected_tokenizer = "",
                          int64_t expected_vocab = 0);

class ShardWriter {
 public:
  // Creates "<path>.tmp"; nothing appears at `path` until close().
  ShardWriter(const std::string& path, const ShardMeta& meta);
  ~ShardWriter();  // without close(): removes the temporary file
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one document and its EOS token.
  void add_document(const int32_t* ids, size_t n);
  int64_t token_count() const { return token_count_; }
  int64_t doc_count() const { return int64_t(doc_offsets_.size()); }
  // Flushes, writes the count attributes, closes, renames .tmp -> path.
  void close();

 private:
  void flush_tokens();
  struct Handles;
  std::unique_ptr<Handles> h_;
  std::string path_;
  ShardMeta meta_;
  std::vector<int32_t> pending_;  // tokens not yet written (written in whole chunks)
  std::vector<int64_t> doc_offsets_;
  int64_t token_count_ = 0;
  int64_t written_ = 0;
  bool closed_ = false;
};

class ShardReader {
 public:
  // Full open: the header checks of shard_read_info plus doc_offsets (first 0, strictly
  // increasing, < token_count).
  ShardReader(const std::string& path, const std::string& expected_tokenizer,
              int64_t expected_vocab);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const ShardInfo& info() const { return info_; }
  // Reads tokens [offset, offset + n) with one hyperslab read and checks every id is
  // below vocab_size (a corrupt or foreign shard is detected here, naming the file).
  void read(int64_t offset, int64_t n, int32_t* out);
  // Reads doc_offsets [first, first + n).
  void read_doc_offsets(int64_t first, int64_t n, int64_t* out);

 private:
  struct Handles;
  std::unique_ptr<Handles> h_;
  ShardInfo info_;
  bool wide_ = false;  // uint32 tokens
  std::vector<uint16_t> narrow_buf_;
  std::vector<uint32_t> wide_buf_;
};

}  // namespace gpt::data
