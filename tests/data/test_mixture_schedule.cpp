// The source schedule and the within-source walk, tested as pure functions.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "data/mixture_schedule.h"
#include "data/source_walk.h"

namespace gpt::data {
namespace {

// GPT-3's mixture (Common Crawl 60, WebText2 22, Books1 8, Books2 8, Wikipedia 3: they
// sum to 101 in the paper, so this also exercises normalisation). Source sizes do not
// enter the schedule at all, which is why small sources repeat instead of distorting it.
TEST(MixtureSchedule, Gpt3WeightsTrackEveryPrefix) {
  const std::vector<double> w = {60, 22, 8, 8, 3};
  MixtureSchedule schedule(w);
  std::vector<int64_t> counts(5, 0);
  double worst = 0;
  for (int64_t n = 1; n <= 1000000; ++n) {
    schedule.next(counts);
    for (int s = 0; s < 5; ++s) {
      double dev = std::fabs(double(counts[size_t(s)]) - w[size_t(s)] / 101.0 * double(n));
      worst = std::max(worst, dev);
      ASSERT_LE(dev, 2.0) << "source " << s << " after " << n << " samples";
    }
  }
  RecordProperty("worst_deviation", std::to_string(worst));
}

TEST(MixtureSchedule, ResumesFromCounts) {
  MixtureSchedule schedule({0.5, 0.3, 0.2});
  std::vector<int64_t> a(3, 0);
  std::vector<int> first;
  for (int i = 0; i < 1000; ++i) first.push_back(schedule.next(a));
  std::vector<int64_t> b(3, 0);
  for (int i = 0; i < 400; ++i) schedule.next(b);
  std::vector<int64_t> resumed = b;  // the state a checkpoint stores
  for (int i = 400; i < 1000; ++i) EXPECT_EQ(schedule.next(resumed), first[size_t(i)]);
}

TEST(MixtureSchedule, RejectsBadWeights) {
  EXPECT_THROW(MixtureSchedule({}), std::runtime_error);
  EXPECT_THROW(MixtureSchedule({1, 0}), std::runtime_error);
  EXPECT_THROW(MixtureSchedule({1, -1}), std::runtime_error);
  EXPECT_THROW(MixtureSchedule({1, NAN}), std::runtime_error);
}

TEST(SourceWalk, PermuteIndexIsABijection) {
  for (uint64_t n : {1ULL, 2ULL, 3ULL, 17ULL, 1000ULL, 4096ULL, 65537ULL}) {
    std::set<uint64_t> seen;
    for (uint64_t x = 0; x < n; ++x) seen.insert(permute_index(x, n, 42));
    EXPECT_EQ(seen.size(), n);
    EXPECT_LT(*seen.rbegin(), n);
  }
}

TEST(SourceWalk, EachEpochVisitsEveryWindowOnce) {
  const int T = 8;
  std::vector<int64_t> shard_tokens = {100, 5, 0, 1000, 57, 9, 333};  // some hold no window
  SourceWalk walk(shard_tokens, T, 7, 0, 2);
  int64_t W = 0;
  for (int64_t n : shard_tokens) W += n >= T + 1 ? (n - 1) / T : 0;
  ASSERT_EQ(walk.windows_per_epoch(), W);
  std::vector<SamplePlace> epoch0;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::set<std::pair<int, int64_t>> seen;
    for (int64_t k = epoch * W; k < (epoch + 1) * W; ++k) {
      SamplePlace p = walk.locate(k);
      EXPECT_EQ(p.offset % T, 0);
      EXPECT_LE(p.offset + T + 1, shard_tokens[size_t(p.shard)]);
      seen.insert({p.shard, p.offset});
      if (epoch == 0) epoch0.push_back(p);
    }
    EXPECT_EQ(int64_t(seen.size()), W);
  }
  // Random access (backwards, across epochs) gives the same places.
  SourceWalk again(shard_tokens, T, 7, 0, 2);
  for (int64_t k = W - 1; k >= 0; --k) {
    again.locate(k + W);
    SamplePlace p = again.locate(k);
    EXPECT_EQ(p.shard, epoch0[size_t(k)].shard);
    EXPECT_EQ(p.offset, epoch0[size_t(k)].offset);
  }
}

}  // namespace
}  // namespace gpt::data
