// The rank grid without MPI: coordinates, group membership, order strings, validation.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "parallel/topology.h"
#include "tests/support/error_of.h"

namespace gpt::parallel {
namespace {

TEST(Topology, DefaultOrderPutsTpInnermostThenDpThenPp) {
  Topology t(16, LayoutConfig{/*tp=*/2, /*pp=*/2, /*dp=*/0, /*ep=*/2});
  EXPECT_EQ(t.dp(), 4);
  // rank = tp + 2*dp + 8*pp
  for (int rank = 0; rank < 16; ++rank) {
    RankCoords c = t.coords(rank);
    EXPECT_EQ(c.tp, rank % 2);
    EXPECT_EQ(c.dp, (rank / 2) % 4);
    EXPECT_EQ(c.pp, rank / 8);
    EXPECT_EQ(c.ep, c.dp % 2);
    EXPECT_EQ(c.edp, c.dp / 2);
    EXPECT_EQ(t.rank_of(c.pp, c.dp, c.tp), rank);
  }
  EXPECT_EQ(t.group_of(GroupKind::tp, 5), (std::vector<int>{4, 5}));
  EXPECT_EQ(t.group_of(GroupKind::dp, 5), (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(t.group_of(GroupKind::pp, 5), (std::vector<int>{5, 13}));
  // dp index of rank 5 is 2: ep pairs dp {2,3}; expert-dp pairs dp {0,2}.
  EXPECT_EQ(t.group_of(GroupKind::ep, 5), (std::vector<int>{5, 7}));
  EXPECT_EQ(t.group_of(GroupKind::edp, 5), (std::vector<int>{1, 5}));
}

TEST(Topology, EveryKindPartitionsTheWorld) {
  Topology t(24, LayoutConfig{2, 3, 4, 2, "tp-dp-pp"});
  for (GroupKind kind : kAllGroupKinds) {
    std::set<int> seen;
    auto groups = t.groups(kind);
    EXPECT_EQ(int(groups.size()) * t.group_size(kind), 24) << group_kind_name(kind);
    for (const auto& g : groups) {
      EXPECT_EQ(int(g.size()), t.group_size(kind));
      for (int rank : g) EXPECT_TRUE(seen.insert(rank).second) << "rank twice: " << rank;
      for (int rank : g) EXPECT_EQ(t.group_of(kind, rank), g);  // same group from every member
    }
    EXPECT_EQ(seen.size(), 24u);
  }
}

TEST(Topology, OtherOrderStrings) {
  Topology t(8, LayoutConfig{2, 2, 2, 1, "dp-tp-pp"});  // dp innermost
  EXPECT_EQ(t.group_of(GroupKind::dp, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(t.group_of(GroupKind::tp, 0), (std::vector<int>{0, 2}));
  EXPECT_EQ(t.group_of(GroupKind::pp, 0), (std::vector<int>{0, 4}));
  Topology p(8, LayoutConfig{2, 2, 2, 1, "pp-tp-dp"});
  EXPECT_EQ(p.group_of(GroupKind::pp, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(p.group_of(GroupKind::dp, 0), (std::vector<int>{0, 4}));
}

TEST(Topology, SingleRankHasTrivialGroups) {
  Topology t(1, LayoutConfig{});
  for (GroupKind kind : kAllGroupKinds) EXPECT_EQ(t.group_of(kind, 0), (std::vector<int>{0}));
  EXPECT_NE(t.describe().find("world 1 = pp 1 x dp 1 x tp 1"), std::string::npos);
}


TEST(Topology, ValidationMessagesNameTheProblem) {
  EXPECT_NE(error_of([] { Topology(6, LayoutConfig{4, 1}); }).find("not divisible by parallel.tp x parallel.pp"),
            std::string::npos);
  EXPECT_NE(error_of([] { Topology(8, LayoutConfig{2, 2, 3}); }).find("!= pp x dp x tp"),
            std::string::npos);
  EXPECT_NE(error_of([] { Topology(8, LayoutConfig{1, 1, 0, 3}); }).find("does not divide dp"),
            std::string::npos);
  EXPECT_NE(error_of([] { Topology(8, LayoutConfig{2, 1, 0, 1, "tp-dp"}); }).find("parallel.order"),
            std::string::npos);
  EXPECT_NE(error_of([] { Topology(8, LayoutConfig{2, 1, 0, 1, "tp-xp-pp"}); }).find("'xp'"),
            std::string::npos);
  GPTConfig model;  // 2 layers, 4 heads
  EXPECT_NE(error_of([&] { Topology(8, LayoutConfig{8, 1}).validate_model(model); })
                .find("model.n_head = 4 is not divisible by parallel.tp = 8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Topology(8, LayoutConfig{1, 4}).validate_model(model); })
                .find("model.n_layer = 2 is fewer than parallel.pp = 4 stages"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { Topology(8, LayoutConfig{2, 2}).validate_model(model); }), "");
}

}  // namespace
}  // namespace gpt::parallel
