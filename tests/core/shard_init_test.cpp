// Sharded initialisation equals unsharded: every parameter of a GPT, cut into 2, 3 and 4
// parts along each of its dimensions (and along dim 0 in 3 blocks, as tensor parallelism
// splits the packed q|k|v), starts with exactly the values of the same slice of the
// whole tensor. The reference slice is cut here by plain index arithmetic, independent
// of for_each_global_run.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "core/model/gpt.h"
#include "core/param_store.h"
#include "core/rng.h"

namespace gpt {
namespace {

constexpr uint64_t kSeed = 1337;

// The shard's elements taken from the whole tensor, row-major, by coordinates.
std::vector<float> reference_slice(const std::vector<float>& whole, const Shape& global,
                                   const ShardSpec& s) {
  int64_t inner = 1, outer = 1;
  for (size_t d = size_t(s.dim) + 1; d < global.size(); ++d) inner *= global[d];
  for (size_t d = 0; d < size_t(s.dim); ++d) outer *= global[d];
  const int64_t G = global[size_t(s.dim)], block = G / s.blocks, piece = block / s.parts;
  std::vector<float> out;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t b = 0; b < s.blocks; ++b)
      for (int64_t r = 0; r < piece; ++r)
        for (int64_t k = 0; k < inner; ++k)
          out.push_back(whole[size_t((o * G + b * block + s.index * piece + r) * inner + k)]);
  return out;
}

TEST(ShardInit, EverySliceOfEveryParameterEqualsTheSameSliceOfTheWhole) {
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 48, cfg.vocab_size = 120, cfg.block_size = 24;
  ParamStore whole;
  GPT model(cfg, whole);
  whole.materialize(Device::CPU);
  whole.init(kSeed);

  int checked = 0;
  for (int i = 0; i < whole.size(); ++i) {
    const Param& p = whole.at(i);
    ASSERT_EQ(p.shape, p.global_shape);
    const std::vector<float> all = to_host_f32(p.value);
    for (int dim = 0; dim < int(p.global_shape.size()); ++dim)
      for (int blocks : {1, 3})
        for (int parts : {2, 3, 4}) {
          if (blocks > 1 && dim != 0) continue;
          if (p.global_shape[size_t(dim)] % (blocks * parts) != 0) continue;
          for (int index = 0; index < parts; ++index) {
            const ShardSpec spec{dim, parts, index, blocks};
            ParamStore one;
            Param* q = one.add(p.name, p.global_shape, p.decay, p.init_std, p.init_value, spec);
            one.materialize(Device::CPU);
            one.init(kSeed);
            const std::vector<float> want = reference_slice(all, p.global_shape, spec);
            ASSERT_EQ(size_t(q->numel()), want.size()) << p.name << " " << spec.describe();
            // Bit for bit: the same generator draws the same element.
            ASSERT_EQ(to_host_f32(q->value), want) << p.name << " " << spec.describe();
            ++checked;
          }
        }
  }
  // Every tensor TP splits has a dimension divisible by 2, 3 and 4 at these sizes.
  std::printf("[shard init] %d slices of %d parameters equal the whole tensor's slice bit for bit\n", checked,
              whole.size());
  EXPECT_GT(checked, 200);
}

TEST(ShardInit, ShardShapeRejectsSplitsThatDoNotDivide) {
  EXPECT_THROW(shard_shape({10, 4}, ShardSpec{0, 3, 0, 1}), Error);
  EXPECT_THROW(shard_shape({9, 4}, ShardSpec{0, 2, 0, 3}), Error);
  EXPECT_EQ(shard_shape({12, 4}, ShardSpec{0, 2, 1, 3}), (Shape{6, 4}));
}

// A padded split (the vocabulary-parallel wte): 13 rows of 3 padded to 16 and cut in 4.
// Part p holds global rows [4p, 4p + 4); rows 13..15 are padding: zeros after init, and
// mapped to no global element. Expected rows counted here by hand.
TEST(ShardInit, PaddedSplitHoldsItsRowsAndZeroPadding) {
  const Shape global{13, 3};
  ParamStore whole;
  Param* w = whole.add("wte", global, false, 0.02f);
  whole.materialize(Device::CPU);
  whole.init(kSeed);
  const std::vector<float> all = to_host_f32(w->value);
  for (int part = 0; part < 4; ++part) {
    const ShardSpec spec{0, 4, part, 1, 16};
    ParamStore one;
    Param* q = one.add("wte", global, false, 0.02f, 0.f, spec);
    ASSERT_EQ(q->shape, (Shape{4, 3}));
    one.materialize(Device::CPU);
    one.init(kSeed);
    const std::vector<float> got = to_host_f32(q->value);
    for (int64_t r = 0; r < 4; ++r)
      for (int64_t c = 0; c < 3; ++c) {
        const int64_t row = 4 * part + r;
        const float want = row < 13 ? all[size_t(row * 3 + c)] : 0.f;
        EXPECT_EQ(got[size_t(r * 3 + c)], want) << "part " << part << " row " << row;
      }
    // The runs: part 3 maps its first row only (elements 36..38), in one run.
    std::vector<std::array<int64_t, 3>> runs;
    for_each_global_run(global, spec, 0, 12, [&](int64_t l, int64_t g, int64_t n) { runs.push_back({l, g, n}); });
    if (part < 3) EXPECT_EQ(runs, (std::vector<std::array<int64_t, 3>>{{0, 12 * part, 12}}));
    else EXPECT_EQ(runs, (std::vector<std::array<int64_t, 3>>{{0, 36, 3}}));
  }
  // Padding past the last part's start (a part of padding only) and a local range
  // starting inside the padding map to nothing.
  int calls = 0;
  for_each_global_run({5, 2}, ShardSpec{0, 4, 3, 1, 8}, 0, 4, [&](int64_t, int64_t, int64_t) { ++calls; });
  for_each_global_run(global, ShardSpec{0, 4, 3, 1, 16}, 4, 12, [&](int64_t, int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_THROW(shard_shape({13, 3}, ShardSpec{0, 4, 0, 1, 12}), Error);  // padding smaller than the rows
  EXPECT_THROW(shard_shape({12, 3}, ShardSpec{0, 2, 0, 3, 18}), Error);  // padded blocks
  EXPECT_THROW(shard_shape({13, 3}, ShardSpec{0, 3, 0, 1, 16}), Error);  // 16 rows in 3 parts
}

// Grouped-query q|k|v: 6 query heads and 2 kv heads of size 2 ([20, 3]: q rows 0..11,
// k 12..15, v 16..19), cut for tp 2. Part p holds q rows [6p, 6p + 6), k rows
// [12 + 2p, 14 + 2p) and v rows [16 + 2p, 18 + 2p), in that order; the expected rows are
// listed here by hand.
TEST(ShardInit, UnequalBlocksHoldEachBlocksShare) {
  const Shape global{20, 3};
  ParamStore whole;
  Param* w = whole.add("qkv", global, true, 0.02f);
  whole.materialize(Device::CPU);
  whole.init(kSeed);
  const std::vector<float> all = to_host_f32(w->value);
  const std::vector<std::vector<int64_t>> rows = {{0, 1, 2, 3, 4, 5, 12, 13, 16, 17},
                                                  {6, 7, 8, 9, 10, 11, 14, 15, 18, 19}};
  for (int part = 0; part < 2; ++part) {
    const ShardSpec spec = packed_split(0, 2, part, {12, 4, 4});
    ASSERT_EQ(spec.block_sizes, (std::vector<int64_t>{12, 4, 4}));
    ParamStore one;
    Param* q = one.add("qkv", global, true, 0.02f, 0.f, spec);
    ASSERT_EQ(q->shape, (Shape{10, 3}));
    one.materialize(Device::CPU);
    one.init(kSeed);
    std::vector<float> want;
    for (int64_t r : rows[size_t(part)])
      for (int64_t c = 0; c < 3; ++c) want.push_back(all[size_t(r * 3 + c)]);
    EXPECT_EQ(to_host_f32(q->value), want) << "part " << part;
    // Three runs, one per block; a range starting inside the k block starts mid-run.
    std::vector<std::array<int64_t, 3>> runs;
    for_each_global_run(global, spec, 0, 30, [&](int64_t l, int64_t g, int64_t n) { runs.push_back({l, g, n}); });
    EXPECT_EQ(runs, (std::vector<std::array<int64_t, 3>>{
                        {0, 18 * part, 18}, {18, 36 + 6 * part, 6}, {24, 48 + 6 * part, 6}}));
    runs.clear();
    for_each_global_run(global, spec, 19, 26, [&](int64_t l, int64_t g, int64_t n) { runs.push_back({l, g, n}); });
    EXPECT_EQ(runs, (std::vector<std::array<int64_t, 3>>{{19, 37 + 6 * part, 5}, {24, 48 + 6 * part, 2}}));
  }
  // Equal blocks keep the compact form; sizes that do not divide or add up are refused.
  EXPECT_TRUE(packed_split(0, 2, 1, {8, 8, 8}).block_sizes.empty());
  EXPECT_EQ(packed_split(0, 2, 1, {8, 8, 8}).blocks, 3);
  EXPECT_THROW(shard_shape(global, packed_split(0, 3, 0, {12, 4, 4})), Error);  // 4 rows in 3 parts
  EXPECT_THROW(shard_shape({21, 3}, packed_split(0, 2, 0, {12, 4, 4})), Error);  // blocks sum to 20
}

// A whole-tensor store draws different values for different names and seeds, and the
// values look like N(0, std): the generator is not degenerate.
TEST(ShardInit, CounterNormalIsStandardNormal) {
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = counter_normal(42, uint64_t(i));
    sum += x, sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0, 0.01);
  EXPECT_NE(init_value_at(1, "a", 1.f, 0.f, 0), init_value_at(1, "b", 1.f, 0.f, 0));
  EXPECT_NE(init_value_at(1, "a", 1.f, 0.f, 0), init_value_at(2, "a", 1.f, 0.f, 0));
}

}  // namespace
}  // namespace gpt
