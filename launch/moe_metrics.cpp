#include "launch/moe_metrics.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "launch/metrics_log.h"

namespace gpt {

MoeStepStats reduce_moe_stats(MoeStepStats s, int grad_accum, parallel::Communicator& comm,
                              const parallel::Group& dp) {
  s.aux_loss /= double(grad_accum);
  s.z_loss /= double(grad_accum);
  if (s.layers.empty() || dp.size() == 1) return s;
  // Losses in F32, counts in I32 (exact: a step's assignments per layer stay far below 2^31).
  std::vector<float> losses{float(s.aux_loss), float(s.z_loss)};
  std::vector<int32_t> counts;
  for (const MoeLayerLoad& l : s.layers) {
    for (int64_t n : l.tokens_per_expert) counts.push_back(int32_t(n));
    counts.push_back(int32_t(l.dropped));
    counts.push_back(int32_t(l.assignments));
  }
  Tensor lt = empty({2}, DType::F32), ct = empty({int64_t(counts.size())}, DType::I32);
  std::copy(losses.begin(), losses.end(), lt.f32());
  std::copy(counts.begin(), counts.end(), ct.i32());
  comm.allreduce(lt, dp).wait();
  comm.allreduce(ct, dp).wait();
  std::copy_n(lt.f32(), 2, losses.begin());
  std::copy_n(ct.i32(), counts.size(), counts.begin());
  s.aux_loss = double(losses[0]) / dp.size();
  s.z_loss = double(losses[1]) / dp.size();
  size_t at = 0;
  for (MoeLayerLoad& l : s.layers) {
    for (int64_t& n : l.tokens_per_expert) n = counts[at++];
    l.dropped = counts[at++];
    l.assignments = counts[at++];
  }
  return s;
}

std::string moe_layers_json(const MoeStepStats& s) {
  std::string json = "[";
  for (const MoeLayerLoad& l : s.layers) {
    if (json.size() > 1) json += ",";
    json += "{\"layer\":" + std::to_string(l.layer) + ",\"tokens_per_expert\":[";
    for (size_t e = 0; e < l.tokens_per_expert.size(); ++e)
      json += (e ? "," : "") + std::to_string(l.tokens_per_expert[e]);
    json += "],\"dropped\":" + std::to_string(l.dropped) + ",\"assignments\":" + std::to_string(l.assignments) +
            ",\"dropped_fraction\":" +
            MetricsLog::number(l.assignments > 0 ? double(l.dropped) / double(l.assignments) : 0.0) + "}";
  }
  return json + "]";
}

}  // namespace gpt
