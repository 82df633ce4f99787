// Cutting the blocks into pipeline chunks: the user's list and its errors, balanced
// splits worked out by hand, and the balanced split against every possible split.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/error.h"
#include "parallel/pipeline/stage_split.h"
#include "tests/support/error_of.h"

namespace gpt::parallel::pipeline {
namespace {

std::vector<int> counts(const std::vector<LayerRange>& ranges) {
  std::vector<int> out;
  int expected_begin = 0;
  for (const LayerRange& r : ranges) {
    EXPECT_EQ(r.begin, expected_begin);  // contiguous, in order, from 0
    expected_begin = r.end;
    out.push_back(r.count());
  }
  return out;
}

TEST(StageSplit, ExplicitListIsTakenAsGiven) {
  const auto ranges = split_layers(12, 3, {2, 6, 4});
  EXPECT_EQ(ranges, (std::vector<LayerRange>{{0, 2}, {2, 8}, {8, 12}}));
  // The costs only matter for the balanced split.
  EXPECT_EQ(counts(split_layers(12, 3, {2, 6, 4}, 5.0, 5.0)), (std::vector<int>{2, 6, 4}));
}

TEST(StageSplit, ExplicitListErrorsNameTheKeyAndTheProblem) {
  auto err = [](std::vector<int> list) { return error_of([&] { split_layers(12, 4, list); }); };
  const std::string count = err({4, 4, 4});
  EXPECT_NE(count.find("'parallel.layers_per_stage'"), std::string::npos) << count;
  EXPECT_NE(count.find("has 3 entries"), std::string::npos) << count;
  EXPECT_NE(count.find("= 4"), std::string::npos) << count;
  const std::string sum = err({3, 3, 3, 4});
  EXPECT_NE(sum.find("'parallel.layers_per_stage'"), std::string::npos) << sum;
  EXPECT_NE(sum.find("sums to 13"), std::string::npos) << sum;
  EXPECT_NE(sum.find("model.n_layer is 12"), std::string::npos) << sum;
  const std::string empty_chunk = err({6, 0, 3, 3});
  EXPECT_NE(empty_chunk.find("'parallel.layers_per_stage'"), std::string::npos) << empty_chunk;
  EXPECT_NE(empty_chunk.find("entry 1 is 0"), std::string::npos) << empty_chunk;
}

TEST(StageSplit, TooFewLayersForTheChunks) {
  const std::string e = error_of([] { split_layers(6, 8, {}); });
  EXPECT_NE(e.find("'parallel.pp'"), std::string::npos) << e;
  EXPECT_NE(e.find("'parallel.virtual_stages'"), std::string::npos) << e;
  EXPECT_NE(e.find("8 pipeline chunks"), std::string::npos) << e;
  EXPECT_THROW(split_layers(6, 0, {}), Error);
  EXPECT_THROW(split_layers(0, 1, {}), Error);
  EXPECT_EQ(counts(split_layers(8, 8, {}, 0, 3)), std::vector<int>(8, 1));  // one each, whatever the head
}

TEST(StageSplit, BalancedByHand) {
  // No extras: 12 / 4.
  EXPECT_EQ(counts(split_layers(12, 4, {})), (std::vector<int>{3, 3, 3, 3}));
  // 13 / 4: a maximum of 4 is unavoidable; the extra block goes to the last chunk.
  EXPECT_EQ(counts(split_layers(13, 4, {})), (std::vector<int>{3, 3, 3, 4}));
  // Head = 2 blocks: 12 + 2 = 14 over 4 chunks needs a maximum of at least 3.5, so 4
  // (3 would leave room for 3 + 3 + 3 + 1 = 10 blocks). The most even costs under 4 are
  // {4, 4, 3, 3}: the last chunk costs n3 + 2, so n3 is 1 or 2; the fewest blocks early
  // gives 3, 3, 4, 2 (costs 3, 3, 4, 4).
  EXPECT_EQ(counts(split_layers(12, 4, {}, 0, 2)), (std::vector<int>{3, 3, 4, 2}));
  // GPT-2 small's head, 4.9 blocks (head_cost_in_layers(50257, 768, 1024)): the last chunk
  // costs at least 1 + 4.9, more than 11 blocks over three chunks need (4, 4, 3).
  EXPECT_EQ(counts(split_layers(12, 4, {}, 0, 4.9)), (std::vector<int>{3, 4, 4, 1}));
  // Embedding 1 and head 1 over 2 chunks: 10 + 2 = 12, 6 each.
  EXPECT_EQ(counts(split_layers(10, 2, {}, 1, 1)), (std::vector<int>{5, 5}));
  // One chunk pays both and holds everything.
  EXPECT_EQ(split_layers(7, 1, {}, 1, 3), (std::vector<LayerRange>{{0, 7}}));
}

TEST(StageSplit, HeadCostInLayers) {
  // V / (12 C + T): GPT-2 small, V = 50257, C = 768.
  EXPECT_NEAR(head_cost_in_layers(50257, 768), 50257.0 / 9216, 1e-12);
  EXPECT_NEAR(head_cost_in_layers(50257, 768, 1024), 50257.0 / 10240, 1e-12);
  EXPECT_NE(error_of([] { head_cost_in_layers(0, 768); }).find("'model.vocab_size'"), std::string::npos);
  EXPECT_NE(error_of([] { head_cost_in_layers(100, 0); }).find("'model.n_embd'"), std::string::npos);
}

// Every split of n blocks into k chunks of at least one, in increasing lexicographic
// order; the first with the least (maximum cost, sum of squared costs) is the answer.
std::vector<int> brute_force(int n_layer, int chunks, double embedding, double head) {
  std::vector<int> best, cur;
  double best_max = 0, best_sq = 0;
  std::function<void(int)> go = [&](int left) {
    if (int(cur.size()) == chunks - 1) {
      cur.push_back(left);
      double max = 0, sq = 0;
      for (int k = 0; k < chunks; ++k) {
        const double cost = cur[size_t(k)] + (k == 0 ? embedding : 0) + (k == chunks - 1 ? head : 0);
        max = std::max(max, cost);
        sq += cost * cost;
      }
      const bool better = best.empty() || max < best_max - 1e-9 ||
                          (std::abs(max - best_max) <= 1e-9 && sq < best_sq - 1e-9);
      if (better) best = cur, best_max = max, best_sq = sq;
      cur.pop_back();
      return;
    }
    const int later = chunks - int(cur.size()) - 1;
    for (int n = 1; n <= left - later; ++n) {
      cur.push_back(n);
      go(left - n);
      cur.pop_back();
    }
  };
  go(n_layer);
  return best;
}

TEST(StageSplit, BalancedMatchesBruteForce) {
  for (double embedding : {0.0, 0.5, 1.0})
    for (double head : {0.0, 0.3, 1.0, 2.0, 2.5, 4.9})
      for (int chunks = 1; chunks <= 4; ++chunks)
        for (int n = chunks; n <= 10; ++n)
          EXPECT_EQ(counts(split_layers(n, chunks, {}, embedding, head)), brute_force(n, chunks, embedding, head))
              << "n_layer " << n << " chunks " << chunks << " embedding " << embedding << " head " << head;
}

}  // namespace
}  // namespace gpt::parallel::pipeline
