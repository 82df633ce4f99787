// Gradient buckets and ZeRO-1 shards as element ranges of the ParamStore's flat buffer.
// Pure index arithmetic, no communication, so it is unit-tested without MPI.
//
// Buckets are cut from the END of the buffer downwards: GPT::backward finishes the
// gradients of the last layers first (on_grads_ready reports ranges in reverse layer
// order), so bucket 0 is the first that can start its reduction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gpt::parallel {

struct ElemRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

class BucketTracker {
 public:
  // bucket_elems >= 1; the last bucket (lowest offsets) takes the remainder.
  BucketTracker(int64_t total, int64_t bucket_elems);
  const std::vector<ElemRange>& buckets() const { return buckets_; }
  int count() const { return int(buckets_.size()); }
  void reset();  // nothing ready (start of the communicating micro-batch)
  // Marks [begin, end) final and returns the buckets it completed, in bucket order.
  // Ranges may come in any order and granularity, but each element at most once.
  std::vector<int> mark_ready(int64_t begin, int64_t end);
  bool complete(int b) const { return ready_[size_t(b)] == buckets_[size_t(b)].size(); }

 private:
  std::vector<ElemRange> buckets_;
  std::vector<int64_t> ready_;  // elements of each bucket reported final so far
};

// ZeRO-1 ownership: rank r of n owns [r*S, min(total, (r+1)*S)) with S = ceil(total/n);
// contiguous and in rank order, so the reduce-scatter of any range is a plain
// variable-count reduce-scatter and the all-gather of the buffer is one call.
ElemRange shard_range(int64_t total, int n, int r);
// Elements of `range` owned by each of the n ranks (sums to range.size()).
std::vector<int64_t> shard_counts(ElemRange range, int64_t total, int n);

}  // namespace gpt::parallel
