#include "data/source_walk.h"

#include <algorithm>

namespace gpt::data {
namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: a cheap, well-spread hash
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t key_of(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return mix64(mix64(mix64(seed ^ 0x5eedULL) ^ a) ^ (b * 0x100000001b3ULL)) ^ mix64(c + 17);
}

}  // namespace

uint64_t permute_index(uint64_t x, uint64_t n, uint64_t key) {
  if (n <= 1) return 0;
  int bits = 64 - __builtin_clzll(n - 1);
  bits += bits & 1;  // balanced halves
  if (bits < 2) bits = 2;
  const int half = bits / 2;
  const uint64_t mask = (uint64_t(1) << half) - 1;
  // A Feistel network is a bijection on [0, 2^bits); cycle walking (re-applying it until
  // the value lands below n) restricts it to a bijection on [0, n). 2^bits < 4n, so the
  // expected number of walks is below 4.
  do {
    uint64_t l = x >> half, r = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      uint64_t f = mix64(key ^ (round * 0x9e3779b97f4a7c15ULL) ^ r) & mask;
      uint64_t next_r = l ^ f;
      l = r;
      r = next_r;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}

SourceWalk::SourceWalk(const std::vector<int64_t>& shard_tokens, int T, uint64_t seed,
                       int source_index, int group_shards)
    : T_(T), seed_(seed), source_(source_index), group_(std::max(1, group_shards)) {
  for (int64_t n : shard_tokens) {
    int64_t w = n >= T + 1 ? (n - 1) / T : 0;
    windows_.push_back(w);
    total_windows_ += w;
  }
}

void SourceWalk::build_epoch(int64_t epoch) {
  order_.clear();
  for (size_t j = 0; j < windows_.size(); ++j)
    if (windows_[j] > 0) order_.push_back(int(j));
  // Fisher-Yates with a counter-based generator: the same order on every platform
  // (std::shuffle's algorithm is implementation-defined).
  uint64_t key = key_of(seed_, uint64_t(source_), uint64_t(epoch), 0xa11);
  for (size_t i = order_.size(); i > 1; --i) {
    size_t j = size_t(mix64(key + i) % i);
    std::swap(order_[i - 1], order_[j]);
  }
  group_start_.assign(1, 0);
  for (size_t g = 0; g < order_.size(); g += size_t(group_)) {
    int64_t sum = 0;
    for (size_t j = g; j < std::min(order_.size(), g + size_t(group_)); ++j) sum += windows_[size_t(order_[j])];
    group_start_.push_back(group_start_.back() + sum);
  }
  epoch_ = epoch;
}

SamplePlace SourceWalk::locate(int64_t k) {
  int64_t epoch = k / total_windows_, pos = k % total_windows_;
  if (epoch != epoch_) build_epoch(epoch);
  size_t g = size_t(std::upper_bound(group_start_.begin(), group_start_.end(), pos) - group_start_.begin()) - 1;
  int64_t group_size = group_start_[g + 1] - group_start_[g];
  int64_t q = int64_t(permute_index(uint64_t(pos - group_start_[g]), uint64_t(group_size),
                                    key_of(seed_, uint64_t(source_), uint64_t(epoch), g + 1)));
  for (size_t j = g * size_t(group_);; ++j) {
    int shard = order_[j];
    if (q < windows_[size_t(shard)]) return {shard, q * T_};
    q -= windows_[size_t(shard)];
  }
}

}  // namespace gpt::data
