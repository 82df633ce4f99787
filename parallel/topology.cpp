#include "parallel/topology.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"

namespace gpt::parallel {
namespace {

enum Dim { dim_tp = 0, dim_dp = 1, dim_pp = 2 };

// "tp-dp-pp" -> {dim_tp, dim_dp, dim_pp}; each of the three exactly once.
std::vector<int> parse_order(const std::string& order) {
  std::vector<int> dims;
  std::stringstream ss(order);
  std::string tok;
  while (std::getline(ss, tok, '-')) {
    if (tok == "tp") dims.push_back(dim_tp);
    else if (tok == "dp") dims.push_back(dim_dp);
    else if (tok == "pp") dims.push_back(dim_pp);
    else fail("parallel.order '" + order + "': unknown dimension '" + tok + "' (use tp, dp, pp)");
  }
  std::vector<int> sorted = dims;
  std::sort(sorted.begin(), sorted.end());
  GPT_CHECK(sorted == std::vector<int>({dim_tp, dim_dp, dim_pp}),
            "parallel.order '" + order + "' must name tp, dp and pp once each, innermost first");
  return dims;
}

}  // namespace

const char* group_kind_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::tp: return "tp";
    case GroupKind::dp: return "dp";
    case GroupKind::pp: return "pp";
    case GroupKind::ep: return "ep";
    case GroupKind::edp: return "edp";
  }
  return "?";
}

Topology::Topology(int world, LayoutConfig cfg)
    : world_(world), tp_(cfg.tp), dp_(cfg.dp), pp_(cfg.pp), ep_(cfg.ep), order_(cfg.order) {
  auto s = [](int v) { return std::to_string(v); };
  GPT_CHECK(world_ >= 1, "world size " + s(world_) + " must be at least 1");
  GPT_CHECK(tp_ >= 1, "parallel.tp = " + s(tp_) + " must be at least 1");
  GPT_CHECK(pp_ >= 1, "parallel.pp = " + s(pp_) + " must be at least 1");
  GPT_CHECK(ep_ >= 1, "parallel.ep = " + s(ep_) + " must be at least 1");
  GPT_CHECK(dp_ >= 0, "parallel.dp = " + s(dp_) + " must be at least 1 (or 0 to infer)");
  if (dp_ == 0) {
    GPT_CHECK(world_ % (tp_ * pp_) == 0,
              "world size " + s(world_) + " is not divisible by parallel.tp x parallel.pp = " + s(tp_) + " x " +
                  s(pp_) + "; launch a multiple of " + s(tp_ * pp_) + " ranks");
    dp_ = world_ / (tp_ * pp_);
  }
  GPT_CHECK(pp_ * dp_ * tp_ == world_,
            "world size " + s(world_) + " != pp x dp x tp = " + s(pp_) + " x " + s(dp_) + " x " +
                s(tp_) + "; change the layout or the number of ranks");
  GPT_CHECK(dp_ % ep_ == 0, "parallel.ep = " + s(ep_) + " does not divide dp = " + s(dp_) +
                                " (experts are carved out of data parallelism)");
  const std::vector<int> dims = parse_order(order_);
  const int size[3] = {tp_, dp_, pp_};
  int stride = 1;
  for (int d : dims) {
    stride_[d] = stride;
    stride *= size[d];
  }
}

void Topology::validate_model(const GPTConfig& model) const {
  auto s = [](int v) { return std::to_string(v); };
  GPT_CHECK(model.n_head % tp_ == 0, "model.n_head = " + s(model.n_head) +
                                         " is not divisible by parallel.tp = " + s(tp_));
  // Each rank keeps whole kv heads for its query heads (Megatron's query groups alike).
  GPT_CHECK(model.kv_heads() % tp_ == 0, "model.n_kv_head = " + s(model.kv_heads()) +
                                             " is not divisible by parallel.tp = " + s(tp_));
  // Layers need not divide evenly: the pipeline balances uneven stages (stage_split.h).
  GPT_CHECK(model.n_layer >= pp_, "model.n_layer = " + s(model.n_layer) + " is fewer than parallel.pp = " +
                                      s(pp_) + " stages (each stage needs a layer)");
}

RankCoords Topology::coords(int rank) const {
  GPT_CHECK(0 <= rank && rank < world_,
            "rank " + std::to_string(rank) + " outside world of " + std::to_string(world_));
  RankCoords c;
  c.tp = (rank / stride_[dim_tp]) % tp_;
  c.dp = (rank / stride_[dim_dp]) % dp_;
  c.pp = (rank / stride_[dim_pp]) % pp_;
  c.ep = c.dp % ep_;
  c.edp = c.dp / ep_;
  return c;
}

int Topology::rank_of(int pp, int dp, int tp) const {
  return pp * stride_[dim_pp] + dp * stride_[dim_dp] + tp * stride_[dim_tp];
}

int Topology::group_size(GroupKind kind) const {
  switch (kind) {
    case GroupKind::tp: return tp_;
    case GroupKind::dp: return dp_;
    case GroupKind::pp: return pp_;
    case GroupKind::ep: return ep_;
    case GroupKind::edp: return dp_ / ep_;
  }
  return 0;
}

std::vector<int> Topology::group_of(GroupKind kind, int rank) const {
  const RankCoords c = coords(rank);
  std::vector<int> members;
  for (int i = 0; i < group_size(kind); ++i) {
    switch (kind) {
      case GroupKind::tp: members.push_back(rank_of(c.pp, c.dp, i)); break;
      case GroupKind::dp: members.push_back(rank_of(c.pp, i, c.tp)); break;
      case GroupKind::pp: members.push_back(rank_of(i, c.dp, c.tp)); break;
      case GroupKind::ep: members.push_back(rank_of(c.pp, c.edp * ep_ + i, c.tp)); break;
      case GroupKind::edp: members.push_back(rank_of(c.pp, i * ep_ + c.ep, c.tp)); break;
    }
  }
  return members;
}

std::vector<std::vector<int>> Topology::groups(GroupKind kind) const {
  // A rank's group is listed when the rank is its smallest member: each group once,
  // ordered by that member, which is the same on every rank.
  std::vector<std::vector<int>> out;
  for (int r = 0; r < world_; ++r) {
    std::vector<int> g = group_of(kind, r);
    if (*std::min_element(g.begin(), g.end()) == r) out.push_back(std::move(g));
  }
  return out;
}

std::string Topology::describe() const {
  std::ostringstream os;
  os << "layout: world " << world_ << " = pp " << pp_ << " x dp " << dp_ << " x tp " << tp_
     << " (ep " << ep_ << ", order " << order_ << ", innermost first)";
  return os.str();
}

}  // namespace gpt::parallel
