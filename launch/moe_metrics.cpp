#include "launch/moe_metrics.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "launch/metrics_log.h"

namespace gpt {

MoeStepStats take_moe_stats(const std::vector<Model*>& chunks) {
  MoeStepStats all;
  for (Model* m : chunks) {
    MoeStepStats s = m->take_moe_stats();
    all.aux_loss += s.aux_loss;
    all.z_loss += s.z_loss;
    all.micro_batches = std::max(all.micro_batches, s.micro_batches);  // each chunk sees every micro-batch
    all.layers.insert(all.layers.end(), s.layers.begin(), s.layers.end());
  }
  return all;
}

MoeStepStats reduce_moe_stats(MoeStepStats s, int grad_accum, const GPTConfig& model,
                              parallel::Communicator& comm, const parallel::Group& dp,
                              const parallel::Group& pp) {
  s.aux_loss /= double(grad_accum);
  s.z_loss /= double(grad_accum);
  // The model's every MoE layer, this rank's loads where it holds the layer, zeros where
  // another stage does: every rank then packs the same layout, and the sum over pp fills it.
  std::vector<MoeLayerLoad> layers;
  for (int l = 0; l < model.n_layer; ++l) {
    if (!model.moe_block(l)) continue;
    auto it = std::find_if(s.layers.begin(), s.layers.end(), [&](const MoeLayerLoad& x) { return x.layer == l; });
    layers.push_back(it != s.layers.end() ? *it
                                          : MoeLayerLoad{l, std::vector<int64_t>(size_t(model.moe.experts), 0), 0, 0});
  }
  GPT_CHECK(layers.size() >= s.layers.size(), "reduce_moe_stats: statistics of a layer the model has no MoE block in");
  s.layers = std::move(layers);
  if (dp.size() == 1 && pp.size() == 1) return s;
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
  // Summed over both: the stages' blocks each add their own losses, and the losses are a
  // mean over the data-parallel ranks (as the cross-entropy), every stage's dp the same size.
  for (const parallel::Group* g : {&dp, &pp}) {
    if (g->size() == 1) continue;
    comm.allreduce(lt, *g).wait();
    comm.allreduce(ct, *g).wait();
  }
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
