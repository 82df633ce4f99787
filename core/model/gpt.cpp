#include "core/model/gpt.h"

namespace gpt {

std::unique_ptr<LayerNorm> Gpt2Parts::make_norm(ParamStore& store, const GPTConfig& cfg,
                                                const LinearFactory& linears) {
  auto norm = std::make_unique<LayerNorm>(store, "lnf", cfg.n_embd);
  linears.add_norm_params(norm->weight, norm->bias);
  return norm;
}

}  // namespace gpt
