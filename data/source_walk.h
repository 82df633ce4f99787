// Where the k-th sample of one source lives: a seeded shuffled walk over its shards and
// the offsets inside them, computed on demand from k (random access, so resuming and
// skipping other ranks' samples cost nothing, and no index file is ever written).
//
// A shard of n tokens holds (n - 1) / T windows; window i is tokens [i*T, i*T + T + 1),
// so consecutive windows overlap by one token and every token is a target once per
// epoch (the shard's last < T tokens are dropped). Epoch e of the source (k / windows)
// permutes the shards (Fisher-Yates, seeded by seed, source, e) and cuts that order
// into groups of `group_shards`; the walk finishes one group before the next, visiting
// the group's windows in a pseudo-random permutation (a keyed Feistel network with
// cycle walking, O(1) per sample). Groups bound how many shards are open at once while
// still interleaving several shards; each epoch reshuffles both levels.
#pragma once
#include <cstdint>
#include <vector>

namespace gpt::data {

struct SamplePlace {
  int shard = 0;       // index into the source's shard list
  int64_t offset = 0;  // first token of the T+1-token window
};

// A pseudo-random bijection of [0, n), keyed; exposed for tests.
uint64_t permute_index(uint64_t x, uint64_t n, uint64_t key);

class SourceWalk {
 public:
  SourceWalk(const std::vector<int64_t>& shard_tokens, int T, uint64_t seed, int source_index,
             int group_shards);
  int64_t windows_per_epoch() const { return total_windows_; }
  SamplePlace locate(int64_t k);  // k >= 0; any k, in any order

 private:
  void build_epoch(int64_t epoch);
  std::vector<int64_t> windows_;  // per shard
  int T_;
  uint64_t seed_;
  int source_;
  int group_;
  int64_t total_windows_ = 0;
  // The layout of the cached epoch.
  int64_t epoch_ = -1;
  std::vector<int> order_;            // shard indices with windows, shuffled
  std::vector<int64_t> group_start_;  // first epoch position of each group (+ end)
};

}  // namespace gpt::data
