#include "parallel/process_groups.h"

#include "core/error.h"

namespace gpt::parallel {

const Group& ProcessGroups::of(GroupKind kind) const {
  switch (kind) {
    case GroupKind::tp: return tp;
    case GroupKind::dp: return dp;
    case GroupKind::pp: return pp;
    case GroupKind::ep: return ep;
    case GroupKind::edp: return edp;
  }
  return world;
}

ProcessGroups make_process_groups(Communicator& comm, const Topology& topo) {
  GPT_CHECK(comm.world_size() == topo.world(),
            "the topology covers " + std::to_string(topo.world()) + " ranks but the job has " +
                std::to_string(comm.world_size()) + "; launch with -np " +
                std::to_string(topo.world()));
  ProcessGroups pg;
  pg.world = comm.world_group();
  // Fixed order: every rank creates the groups in the same sequence.
  for (GroupKind kind : kAllGroupKinds) {
    Group g = comm.make_group(group_kind_name(kind), topo.groups(kind));
    switch (kind) {
      case GroupKind::tp: pg.tp = g; break;
      case GroupKind::dp: pg.dp = g; break;
      case GroupKind::pp: pg.pp = g; break;
      case GroupKind::ep: pg.ep = g; break;
      case GroupKind::edp: pg.edp = g; break;
    }
  }
  return pg;
}

}  // namespace gpt::parallel
