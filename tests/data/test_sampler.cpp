// The mixture sampler end to end on synthetic shards: the global-order contract of
// data/batch.h under DP = 1, 2, 4, and stop/restore under the same or another DP size.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>

#include "data/mixture_source.h"
#include "data/shard.h"
#include "tests/data/data_test_util.h"

namespace gpt::data {
namespace {

constexpr int T = 16;
constexpr int kSteps = 50;

class Sampler : public ::testing::Test {
 protected:
  void SetUp() override {
    // Very different sizes: "tiny" repeats many times within 50 steps, "big" never does.
    auto add = [&](const std::string& name, int shards, int64_t tokens, double weight) {
      MixtureSourceInput in{name, {}, weight};
      for (int i = 0; i < shards; ++i) {
        std::string path = dir.file(name + "_" + std::to_string(i) + ".h5");
        testing::write_synthetic_shard(path, testing::test_meta(name), tokens, uint64_t(seed++));
        in.shard_paths.push_back(path);
      }
      inputs.push_back(in);
    };
    add("big", 4, 20000, 0.6);
    add("mid", 2, 3000, 0.3);
    add("tiny", 1, 200, 0.1);
  }

  struct Run {
    std::vector<std::vector<int32_t>> steps;  // per step: all ranks' rows in global order
    std::vector<std::vector<int64_t>> states;  // state after each step
  };

  // Runs steps [from, to) with `dp` samplers (one per rank), optionally restored first.
  Run run(int dp, int accum, int from, int to, const std::vector<int64_t>* state = nullptr) {
    std::vector<std::unique_ptr<BatchSource>> ranks;
    MixtureOptions opt;
    opt.seed = 1234;
    opt.shuffle_shards = 2;
    opt.prefetch_batches = 3;
    for (int r = 0; r < dp; ++r) {
      ranks.push_back(make_mixture_source(inputs, RankSlot{r, dp, accum, 8 / (dp * accum), T}, opt));
      if (state) ranks.back()->restore(*state);
    }
    Run out;
    Batch b;
    for (int step = from; step < to; ++step) {
      std::vector<int32_t> all, sources;  // compared as tokens then sources
      for (int r = 0; r < dp; ++r) {
        for (int m = 0; m < accum; ++m) {
          ranks[size_t(r)]->next(b);
          EXPECT_EQ(b.tokens.size(), size_t(b.B) * (T + 1));
          all.insert(all.end(), b.tokens.begin(), b.tokens.end());
          sources.insert(sources.end(), b.source.begin(), b.source.end());
          check_segments(b);
        }
      }
      all.insert(all.end(), sources.begin(), sources.end());
      out.steps.push_back(all);
      out.states.push_back(ranks[0]->state());
      for (int r = 1; r < dp; ++r) EXPECT_EQ(ranks[size_t(r)]->state(), out.states.back());
    }
    return out;
  }

  static void check_segments(Batch& b) {
    const int32_t eot = 50256;
    for (int r = 0; r < b.B; ++r) {
      const int32_t* row = b.row(r);
      const int32_t* seg = b.segment.data() + size_t(r) * (T + 1);
      ASSERT_EQ(seg[0], 0);
      for (int t = 0; t < T; ++t) ASSERT_EQ(seg[t + 1], seg[t] + (row[t] == eot ? 1 : 0));
    }
  }

  testing::TempDir dir;
  std::vector<MixtureSourceInput> inputs;
  int seed = 1;
};

TEST_F(Sampler, SameGlobalSequenceForEveryDpSize) {
  Run one = run(1, 8, 0, kSteps);
  Run two = run(2, 2, 0, kSteps);
  Run four = run(4, 1, 0, kSteps);
  ASSERT_EQ(one.steps.size(), size_t(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    EXPECT_EQ(two.steps[size_t(s)], one.steps[size_t(s)]) << "step " << s;
    EXPECT_EQ(four.steps[size_t(s)], one.steps[size_t(s)]) << "step " << s;
  }
  EXPECT_EQ(two.states.back(), one.states.back());
  EXPECT_EQ(four.states.back(), one.states.back());
  EXPECT_NE(one.steps[0], one.steps[1]);
}

TEST_F(Sampler, RowsAreTheShardsWindowsEachOncePerEpoch) {
  // One source of two shards: an epoch is every window [i*T, i*T+T+1) of both, once.
  std::vector<std::vector<int32_t>> shard_tokens;
  std::set<std::pair<int, int64_t>> windows;
  for (int j = 0; j < 2; ++j) {
    ShardReader r(inputs[1].shard_paths[size_t(j)], "", 0);
    shard_tokens.emplace_back(static_cast<size_t>(r.info().token_count));
    r.read(0, r.info().token_count, shard_tokens.back().data());
    for (int64_t i = 0; i < (r.info().token_count - 1) / T; ++i) windows.insert({j, i * T});
  }
  MixtureOptions opt;
  opt.seed = 3;
  auto src = make_mixture_source({inputs[1]}, RankSlot{0, 1, 1, 1, T}, opt);
  std::set<std::pair<int, int64_t>> seen;
  Batch b;
  for (size_t n = 0; n < windows.size(); ++n) {
    src->next(b);
    bool found = false;
    for (auto& [j, off] : windows) {
      if (seen.count({j, off})) continue;
      if (std::equal(b.tokens.begin(), b.tokens.end(), shard_tokens[size_t(j)].begin() + off)) {
        seen.insert({j, off});
        found = true;
        break;
      }
    }
    ASSERT_TRUE(found) << "row " << n << " is not an unvisited window of the shards";
  }
  EXPECT_EQ(seen, windows);
}

TEST_F(Sampler, RunsAreRepeatable) {
  EXPECT_EQ(run(2, 1, 0, 10).steps, run(2, 1, 0, 10).steps);
}

TEST_F(Sampler, StopAtStep20AndResumeUnderAnyDpSize) {
  Run ref = run(1, 8, 0, kSteps);
  for (int dp_before : {1, 2, 4}) {
    Run first = run(dp_before, 1, 0, 20);
    const std::vector<int64_t> saved = first.states.back();
    for (int dp_after : {1, 2, 4}) {
      Run resumed = run(dp_after, 1, 20, kSteps, &saved);
      for (int s = 20; s < kSteps; ++s)
        ASSERT_EQ(resumed.steps[size_t(s - 20)], ref.steps[size_t(s)])
            << "dp " << dp_before << " -> " << dp_after << ", step " << s;
    }
  }
}

TEST_F(Sampler, StateIsAFewIntegers) {
  Run r = run(2, 2, 0, 3);
  const auto& s = r.states.back();
  ASSERT_EQ(s.size(), 4u + inputs.size());  // tag, seed, sample index, S, counts
  EXPECT_EQ(s[0], kMixtureStateTag);
  EXPECT_EQ(s[2], 3 * 8);  // 3 steps of G = 8
}

TEST_F(Sampler, RestoreRejectsAnotherSeedOrMixture) {
  MixtureOptions opt;
  opt.seed = 1;
  auto a = make_mixture_source(inputs, RankSlot{0, 1, 1, 2, T}, opt);
  std::vector<int64_t> s = a->state();
  s[1] = 99;
  EXPECT_THROW(a->restore(s), std::runtime_error);
  s = a->state();
  s.pop_back();
  EXPECT_THROW(a->restore(s), std::runtime_error);
}

TEST_F(Sampler, ConfigFileAndValidationSplit) {
  // Validation reads valid_glob: give it shards with a distinctive size.
  testing::write_synthetic_shard(dir.file("va_0.h5.val"), testing::test_meta("big"), 777, 91);
  std::string cfg = dir.file("mix.ini");
  testing::write_config(cfg, {{"big", "big_*.h5", "va_*.h5.val", "3"},
                              {"mid", "mid_*.h5", "mid_1.h5", "1"}});
  auto train = make_mixture_source(cfg, RankSlot{0, 1, 1, 4, T}, 5, false, 50257, "test-tokenizer");
  auto valid = make_mixture_source(cfg, RankSlot{0, 1, 1, 4, T}, 5, true, 50257, "test-tokenizer");
  EXPECT_NE(train->describe().find("big (w 0.7500, 4 shards"), std::string::npos) << train->describe();
  EXPECT_NE(valid->describe().find("big (w 0.7500, 1 shards"), std::string::npos) << valid->describe();
  Batch b;
  valid->next(b);
  EXPECT_EQ(b.B, 4);
  EXPECT_EQ(valid->vocab_size(), 50257);
}

}  // namespace
}  // namespace gpt::data
