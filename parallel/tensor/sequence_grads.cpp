#include "parallel/tensor/sequence_grads.h"

#include <algorithm>

namespace gpt::parallel {

NormGradSum::NormGradSum(TpRegion& tp, ParamStore& store, const std::vector<Param*>& params)
    : tp_(tp), store_(store) {
  std::vector<ElemRange> r;
  for (const Param* p : params) r.push_back({p->offset, p->offset + p->numel()});
  std::sort(r.begin(), r.end(), [](const ElemRange& a, const ElemRange& b) { return a.begin < b.begin; });
  for (const ElemRange& e : r) {
    if (!ranges_.empty() && ranges_.back().end == e.begin) ranges_.back().end = e.end;
    else ranges_.push_back(e);
  }
}

void NormGradSum::sum_within(int64_t begin, int64_t end) {
  for (const ElemRange& r : ranges_) {
    if (r.begin < begin || r.end > end) continue;
    Tensor g = store_.flat_grads().slice(r.begin, {r.size()});
    tp_.allreduce(g);
  }
}

}  // namespace gpt::parallel
