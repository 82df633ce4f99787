// Bucket cutting, readiness tracking and ZeRO-1 shard arithmetic, without MPI.
#include <gtest/gtest.h>

#include "parallel/dp_buckets.h"

namespace gpt::parallel {
namespace {

TEST(BucketTracker, CutsFromTheEndWithTheRemainderLast) {
  BucketTracker t(25, 10);
  ASSERT_EQ(t.count(), 3);
  EXPECT_EQ(t.buckets()[0].begin, 15);
  EXPECT_EQ(t.buckets()[0].end, 25);
  EXPECT_EQ(t.buckets()[1].begin, 5);
  EXPECT_EQ(t.buckets()[2].begin, 0);
  EXPECT_EQ(t.buckets()[2].end, 5);
}

TEST(BucketTracker, BucketCompletesWhenAllItsRangesAreReady) {
  BucketTracker t(25, 10);
  EXPECT_TRUE(t.mark_ready(20, 25).empty());
  EXPECT_EQ(t.mark_ready(12, 20), std::vector<int>{0});  // finishes bucket 0, starts bucket 1
  EXPECT_EQ(t.mark_ready(0, 12), (std::vector<int>{1, 2}));
  t.reset();
  EXPECT_FALSE(t.complete(0));
  EXPECT_EQ(t.mark_ready(0, 25), (std::vector<int>{0, 1, 2}));
  EXPECT_THROW(t.mark_ready(3, 4), std::exception);  // reported twice
}

TEST(Shards, TileTheBufferInRankOrder) {
  const int64_t total = 10;
  EXPECT_EQ(shard_range(total, 4, 0).begin, 0);
  EXPECT_EQ(shard_range(total, 4, 0).end, 3);
  EXPECT_EQ(shard_range(total, 4, 3).begin, 9);
  EXPECT_EQ(shard_range(total, 4, 3).end, 10);
  EXPECT_EQ(shard_range(3, 4, 3).size(), 0);  // more ranks than elements: an empty shard
  EXPECT_EQ(shard_counts({2, 7}, total, 4), (std::vector<int64_t>{1, 3, 1, 0}));
  EXPECT_EQ(shard_counts({0, 10}, total, 4), (std::vector<int64_t>{3, 3, 3, 1}));
}

}  // namespace
}  // namespace gpt::parallel
