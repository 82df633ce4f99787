// The inside of a Tokenizer: the immutable vocabulary with its lookup tables, and the
// byte-pair merge of one pre-tokenised piece. Not part of the public API.
//
// Merge rule (the one tiktoken and js-tiktoken use for GPT-2): a piece starts as its
// bytes; repeatedly, among adjacent parts whose concatenation is a token, merge the
// pair whose token has the lowest id (the leftmost on ties), until none is left. If the
// whole piece is a token, that token is the answer directly. Ranks are token ids, so
// every vocabulary here assigns ids in merge order (bytes first).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gpt::data {

// 64-bit hash of a byte string; fast on the short strings that words are.
inline uint64_t hash_bytes(const uint8_t* p, size_t n) {
  const uint64_t k = 0x9E3779B97F4A7C15ull;
  uint64_t h = k ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * k;
  }
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

// Open-addressing map from (left id, right id) to the id of their concatenation.
class PairTable {
 public:
  void build(const std::vector<std::pair<uint64_t, int32_t>>& entries);
  // The merged token id, or -1.
  int32_t get(int32_t a, int32_t b) const {
    uint64_t key = (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return e.value;
      if (e.key == kEmpty) return -1;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Entry {
    uint64_t key = kEmpty;
    int32_t value = -1;
  };
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
};

// Open-addressing map from a token's bytes to its id (the strings live in the vocab).
class BytesTable {
 public:
  void build(const std::vector<std::string>& tokens, int32_t skip_id);
  int32_t get(const uint8_t* p, size_t n) const;

 private:
  struct Entry {
    uint32_t tag = 0;  // high hash bits, to skip most string compares
    int32_t id = -1;
  };
  const std::vector<std::string>* tokens_ = nullptr;
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

struct Vocab {
  std::string name;                                // "gpt2-bpe", "bpe", ...
  std::vector<std::string> tokens;                 // id -> bytes
  std::vector<std::pair<int32_t, int32_t>> merges; // training order; each makes a+b
  int32_t eot = -1;                                // <|endoftext|>, excluded from lookups
  int32_t byte_id[256] = {};                       // id of each single byte
  BytesTable bytes_to_id;
  PairTable pair_to_id;  // every split of every token into two tokens
  uint64_t serial = 0;   // unique per built Vocab, keys the per-thread caches

  // Fills byte_id and the lookup tables from tokens/eot; throws if a byte is missing.
  void build_tables();
};

// Per-thread scratch: a cache of piece -> ids, and buffers for long pieces, so the hot
// path allocates nothing once warm.
class EncodeState {
 public:
  // Appends the ids of one piece to out.
  void encode_piece(const Vocab& v, const uint8_t* p, size_t n, std::vector<int32_t>& out);
  void reset(uint64_t serial);
  uint64_t serial() const { return serial_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = 0, val_off = 0, val_len = 0;
  };
  static constexpr size_t kSlots = 1 << 16;          // cache capacity (half used at most)
  static constexpr size_t kArenaBytes = 8u << 20;    // cleared when its keys exceed this
  void merge_short(const Vocab& v, const uint8_t* p, size_t n, std::vector<int32_t>& out);
  void merge_long(const Vocab& v, const uint8_t* p, size_t n, std::vector<int32_t>& out);
  uint64_t serial_ = 0;
  std::vector<Slot> slots_;
  size_t used_ = 0;
  std::string keys_;
  std::vector<int32_t> vals_;
  // merge_long buffers
  std::vector<int32_t> tok_;
  std::vector<uint32_t> next_, prev_;
  std::vector<uint64_t> heap_;
  friend void bpe_merge_for_test(const Vocab&, const uint8_t*, size_t, bool, std::vector<int32_t>&);
};

// Runs the short (quadratic scan) or the long (heap) merge on a piece, bypassing the
// whole-token shortcut and the cache; tests check the two agree.
void bpe_merge_for_test(const Vocab& v, const uint8_t* p, size_t n, bool use_long,
                        std::vector<int32_t>& out);

}  // namespace gpt::data
