#include "core/model/gpt.h"

#include <algorithm>

namespace gpt {

std::unique_ptr<LayerNorm> Gpt2Parts::make_norm(ParamStore& store, const GPTConfig& cfg,
                                                const LinearFactory& linears) {
  auto norm = std::make_unique<LayerNorm>(store, "lnf", cfg.n_embd);
  linears.add_norm_params(norm->weight, norm->bias);
  return norm;
}

void Gpt2Parts::after_train_forward(Block& block, BlockActs& acts, int layer, float aux_grad_scale,
                                    MoeStepStats& step) {
  if (!block.mlp->is_moe()) return;
  acts.aux_grad_scale = aux_grad_scale;
  step.aux_loss += acts.moe.routing.aux_loss;
  step.z_loss += acts.moe.routing.z_loss;
  const MoeStats& s = block.mlp->moe->last_stats();
  auto it = std::find_if(step.layers.begin(), step.layers.end(), [&](const MoeLayerLoad& l) { return l.layer == layer; });
  if (it == step.layers.end()) {
    step.layers.push_back(MoeLayerLoad{layer, std::vector<int64_t>(s.tokens_per_expert.size(), 0), 0, 0});
    it = step.layers.end() - 1;
  }
  for (size_t e = 0; e < s.tokens_per_expert.size(); ++e) it->tokens_per_expert[e] += s.tokens_per_expert[e];
  it->dropped += s.dropped;
  it->assignments += s.assignments;
}

}  // namespace gpt
