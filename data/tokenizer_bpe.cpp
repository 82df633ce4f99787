#include "data/tokenizer_bpe.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <functional>
#include <stdexcept>

namespace gpt::data {
namespace {

size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c <<= 1;
  return c;
}

std::atomic<uint64_t> g_next_serial{1};

}  // namespace

void PairTable::build(const std::vector<std::pair<uint64_t, int32_t>>& entries) {
  size_t cap = pow2_at_least(entries.size() * 2 + 1);  // load factor <= 1/2
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  for (const auto& [key, value] : entries) {
    size_t i = slot(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = Entry{key, value};
  }
}

void BytesTable::build(const std::vector<std::string>& tokens, int32_t skip_id) {
  tokens_ = &tokens;
  size_t cap = pow2_at_least(tokens.size() * 2 + 1);
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  for (int32_t id = 0; id < int32_t(tokens.size()); ++id) {
    if (id == skip_id) continue;
    const std::string& t = tokens[id];
    uint64_t h = hash_bytes(reinterpret_cast<const uint8_t*>(t.data()), t.size());
    size_t i = h & mask_;
    while (slots_[i].id >= 0) {
      if ((*tokens_)[slots_[i].id] == t)
        throw std::runtime_error("tokenizer: token " + std::to_string(id) + " duplicates token " +
                                 std::to_string(slots_[i].id));
      i = (i + 1) & mask_;
    }
    slots_[i] = Entry{uint32_t(h >> 32), id};
  }
}

int32_t BytesTable::get(const uint8_t* p, size_t n) const {
  uint64_t h = hash_bytes(p, n);
  uint32_t tag = uint32_t(h >> 32);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    const Entry& e = slots_[i];
    if (e.id < 0) return -1;
    if (e.tag == tag) {
      const std::string& t = (*tokens_)[e.id];
      if (t.size() == n && std::memcmp(t.data(), p, n) == 0) return e.id;
    }
  }
}

void Vocab::build_tables() {
  bytes_to_id.build(tokens, eot);
  for (int b = 0; b < 256; ++b) {
    uint8_t byte = uint8_t(b);
    byte_id[b] = bytes_to_id.get(&byte, 1);
    if (byte_id[b] < 0)
      throw std::runtime_error("tokenizer: vocabulary '" + name + "' has no token for byte " +
                               std::to_string(b) + " (byte-level BPE needs all 256)");
  }
  // Every way of writing a token as two tokens: the merge rule looks pairs up by their
  // concatenation, not by the merge list, so all splits must be present.
  std::vector<std::pair<uint64_t, int32_t>> pairs;
  for (int32_t id = 0; id < int32_t(tokens.size()); ++id) {
    if (id == eot) continue;
    const auto* s = reinterpret_cast<const uint8_t*>(tokens[id].data());
    size_t n = tokens[id].size();
    for (size_t k = 1; k < n; ++k) {
      int32_t a = bytes_to_id.get(s, k), b = bytes_to_id.get(s + k, n - k);
      if (a >= 0 && b >= 0) pairs.push_back({(uint64_t(uint32_t(a)) << 32) | uint32_t(b), id});
    }
  }
  pair_to_id.build(pairs);
  serial = g_next_serial.fetch_add(1);
}

void EncodeState::reset(uint64_t serial) {
  serial_ = serial;
  slots_.assign(kSlots, Slot{});
  used_ = 0;
  keys_.clear();
  vals_.clear();
}

void EncodeState::encode_piece(const Vocab& v, const uint8_t* p, size_t n,
                               std::vector<int32_t>& out) {
  if (n == 1) {
    out.push_back(v.byte_id[p[0]]);
    return;
  }
  // Most pieces are whole tokens (common words); that lookup is as cheap as the cache.
  int32_t whole = v.bytes_to_id.get(p, n);
  if (whole >= 0) {
    out.push_back(whole);
    return;
  }
  uint64_t h = hash_bytes(p, n);
  size_t i = h & (kSlots - 1);
  for (;; i = (i + 1) & (kSlots - 1)) {
    const Slot& s = slots_[i];
    if (s.key_len == 0) break;
    if (s.hash == h && s.key_len == n && std::memcmp(keys_.data() + s.key_off, p, n) == 0) {
      out.insert(out.end(), vals_.begin() + s.val_off, vals_.begin() + s.val_off + s.val_len);
      return;
    }
  }
  size_t first = out.size();
  if (n <= 64)
    merge_short(v, p, n, out);
  else
    merge_long(v, p, n, out);
  if (n > 256) return;  // long pieces are rare repeats; keep the cache for words
  if (used_ + 1 > kSlots / 2 || keys_.size() + n > kArenaBytes) {
    reset(serial_);  // simplest eviction: start over; the working set refills quickly
    i = h & (kSlots - 1);
    while (slots_[i].key_len != 0) i = (i + 1) & (kSlots - 1);
  }
  Slot& s = slots_[i];
  s.hash = h;
  s.key_off = uint32_t(keys_.size());
  s.key_len = uint32_t(n);
  s.val_off = uint32_t(vals_.size());
  s.val_len = uint32_t(out.size() - first);
  keys_.append(reinterpret_cast<const char*>(p), n);
  vals_.insert(vals_.end(), out.begin() + first, out.end());
  ++used_;
}

// Quadratic scan over at most 64 parts on the stack: for words this beats a heap.
void EncodeState::merge_short(const Vocab& v, const uint8_t* p, size_t n,
                              std::vector<int32_t>& out) {
  int32_t tok[64];
  int32_t rank[64];  // rank[i]: id of tok[i] + tok[i+1], INT_MAX if not a token
  auto pair_rank = [&](int32_t a, int32_t b) {
    int32_t r = v.pair_to_id.get(a, b);
    return r < 0 ? INT_MAX : r;
  };
  size_t m = n;
  for (size_t i = 0; i < m; ++i) tok[i] = v.byte_id[p[i]];
  for (size_t i = 0; i + 1 < m; ++i) rank[i] = pair_rank(tok[i], tok[i + 1]);
  rank[m - 1] = INT_MAX;
  while (m > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < m; ++i)
      if (rank[i] < rank[best]) best = i;  // strict: the leftmost wins ties
    if (rank[best] == INT_MAX) break;
    tok[best] = rank[best];
    std::memmove(tok + best + 1, tok + best + 2, (m - best - 2) * sizeof(int32_t));
    std::memmove(rank + best + 1, rank + best + 2, (m - best - 2) * sizeof(int32_t));
    --m;
    rank[m - 1] = INT_MAX;
    if (best + 1 < m) rank[best] = pair_rank(tok[best], tok[best + 1]);
    if (best > 0) rank[best - 1] = pair_rank(tok[best - 1], tok[best]);
  }
  out.insert(out.end(), tok, tok + m);
}

// The same rule for long pieces (a megabyte of one letter is one piece) in
// O(n log n): parts form a linked list, candidate pairs sit in a min-heap keyed by
// (rank, position); entries made stale by earlier merges are skipped when popped.
void EncodeState::merge_long(const Vocab& v, const uint8_t* p, size_t n,
                             std::vector<int32_t>& out) {
  const uint32_t none = UINT32_MAX;
  tok_.resize(n);
  next_.resize(n);
  prev_.resize(n);
  heap_.clear();
  for (size_t i = 0; i < n; ++i) {
    tok_[i] = v.byte_id[p[i]];
    next_[i] = i + 1 < n ? uint32_t(i + 1) : none;
    prev_[i] = i > 0 ? uint32_t(i - 1) : none;
  }
  auto push = [&](uint32_t i) {
    int32_t r = v.pair_to_id.get(tok_[i], tok_[next_[i]]);
    if (r >= 0) {
      heap_.push_back((uint64_t(r) << 32) | i);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(uint32_t(i));
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    uint64_t e = heap_.back();
    heap_.pop_back();
    int32_t r = int32_t(e >> 32);
    uint32_t i = uint32_t(e);
    if (tok_[i] < 0 || next_[i] == none) continue;
    uint32_t j = next_[i];
    if (v.pair_to_id.get(tok_[i], tok_[j]) != r) continue;  // stale
    tok_[i] = r;
    tok_[j] = -1;
    next_[i] = next_[j];
    if (next_[i] != none) prev_[next_[i]] = i;
    if (prev_[i] != none) push(prev_[i]);
    if (next_[i] != none) push(i);
  }
  for (uint32_t i = 0; i != none; i = next_[i]) out.push_back(tok_[i]);
}

void bpe_merge_for_test(const Vocab& v, const uint8_t* p, size_t n, bool use_long,
                        std::vector<int32_t>& out) {
  EncodeState state;
  if (use_long || n > 64)
    state.merge_long(v, p, n, out);
  else
    state.merge_short(v, p, n, out);
}

}  // namespace gpt::data
