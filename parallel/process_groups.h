// The groups of a Topology, created on a Communicator: the join between the pure rank
// grid and the library handles. Every rank must call make_process_groups with the same
// topology (group creation is collective over the world).
#pragma once
#include "parallel/communicator.h"
#include "parallel/topology.h"

namespace gpt::parallel {

struct ProcessGroups {
  Group world, tp, dp, pp, ep, edp;
  const Group& of(GroupKind kind) const;
};

ProcessGroups make_process_groups(Communicator& comm, const Topology& topo);

}  // namespace gpt::parallel
