#include "parallel/dp_buckets.h"

#include <algorithm>

#include "core/error.h"

namespace gpt::parallel {

BucketTracker::BucketTracker(int64_t total, int64_t bucket_elems) {
  GPT_CHECK(bucket_elems >= 1, "bucket size must hold at least one element");
  for (int64_t end = total; end > 0; end -= bucket_elems)
    buckets_.push_back({std::max<int64_t>(0, end - bucket_elems), end});
  ready_.assign(buckets_.size(), 0);
}

void BucketTracker::reset() { std::fill(ready_.begin(), ready_.end(), 0); }

std::vector<int> BucketTracker::mark_ready(int64_t begin, int64_t end) {
  std::vector<int> done;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const int64_t lo = std::max(begin, buckets_[b].begin), hi = std::min(end, buckets_[b].end);
    if (lo >= hi) continue;
    ready_[b] += hi - lo;
    GPT_CHECK(ready_[b] <= buckets_[b].size(),
              "gradient range [" + std::to_string(begin) + ", " + std::to_string(end) +
                  ") reported ready twice in one backward");
    if (ready_[b] == buckets_[b].size()) done.push_back(int(b));
  }
  return done;
}

ElemRange shard_range(int64_t total, int n, int r) {
  const int64_t per = (total + n - 1) / n;
  return {std::min(total, per * r), std::min(total, per * (r + 1))};
}

std::vector<int64_t> shard_counts(ElemRange range, int64_t total, int n) {
  std::vector<int64_t> counts;
  for (int r = 0; r < n; ++r) {
    const ElemRange s = shard_range(total, n, r);
    counts.push_back(std::max<int64_t>(0, std::min(range.end, s.end) -
                                              std::max(range.begin, s.begin)));
  }
  return counts;
}

}  // namespace gpt::parallel
