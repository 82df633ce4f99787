#include "core/model/llama.h"

namespace gpt {

std::unique_ptr<RMSNorm> LlamaParts::make_norm(ParamStore& store, const GPTConfig& cfg, const LinearFactory& linears) {
  auto norm = std::make_unique<RMSNorm>(store, "lnf", cfg.n_embd, cfg.norm_eps);
  linears.add_norm_params(norm->weight, nullptr);
  return norm;
}

}  // namespace gpt
