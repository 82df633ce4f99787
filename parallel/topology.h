// Topology: the rank grid. world = pp x dp x tp, laid out by an order string that
// names the dimensions innermost (fastest-varying) first, as Megatron does: the
// default "tp-dp-pp" keeps a TP group on adjacent ranks, i.e. on one node. Expert
// parallelism is carved out of data parallelism (ep divides dp): DP index d splits into
// ep_rank = d % ep and the expert-data-parallel index d / ep.
//
// Pure arithmetic, no MPI: the communicator side turns these rank lists into groups
// (see process_groups.h), so the grid is unit-tested without launching anything.
#pragma once
#include <string>
#include <vector>

#include "core/model/gpt_config.h"

namespace gpt::parallel {

struct LayoutConfig {
  int tp = 1;
  int pp = 1;
  int dp = 0;  // 0: whatever world / (tp * pp) leaves
  int ep = 1;  // must divide dp
  std::string order = "tp-dp-pp";  // innermost first; a permutation of tp, dp, pp
};

enum class GroupKind { tp, dp, pp, ep, edp };  // edp: data parallel within one expert
const char* group_kind_name(GroupKind kind);
constexpr GroupKind kAllGroupKinds[] = {GroupKind::tp, GroupKind::dp, GroupKind::pp,
                                        GroupKind::ep, GroupKind::edp};

struct RankCoords {
  int tp = 0, dp = 0, pp = 0;
  int ep = 0;   // dp % ep_size
  int edp = 0;  // dp / ep_size
};

class Topology {
 public:
  // Throws gpt::Error with the reason when the layout cannot cover `world` ranks.
  Topology(int world, LayoutConfig cfg);
  // Throws gpt::Error when the model cannot be split this way (heads % tp, layers % pp).
  void validate_model(const GPTConfig& model) const;

  int world() const { return world_; }
  int tp() const { return tp_; }
  int dp() const { return dp_; }
  int pp() const { return pp_; }
  int ep() const { return ep_; }
  const std::string& order() const { return order_; }

  RankCoords coords(int rank) const;
  int rank_of(int pp, int dp, int tp) const;
  // Every group of one kind: a partition of the world, each group sorted by the group's
  // own coordinate (so a rank's index in its group is its coordinate).
  std::vector<std::vector<int>> groups(GroupKind kind) const;
  // The members of `rank`'s group of this kind, in group order.
  std::vector<int> group_of(GroupKind kind, int rank) const;
  // The size of every group of this kind.
  int group_size(GroupKind kind) const;
  std::string describe() const;  // one line for the start-up log

 private:
  int world_, tp_, dp_, pp_, ep_;
  std::string order_;
  int stride_[3];  // rank stride of tp, dp, pp (indexed by dim_tp/dim_dp/dim_pp)
};

}  // namespace gpt::parallel
