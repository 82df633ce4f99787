#include "core/model/make_model.h"

#include "core/model/gpt.h"
#include "core/model/llama.h"

namespace gpt {

std::unique_ptr<Model> make_model(const GPTConfig& cfg, ParamStore& store, Recompute recompute, StageSpec stage,
                                  const LinearFactory* linears) {
  switch (cfg.family) {
    case ModelFamily::GPT2: return std::make_unique<GPT>(cfg, store, recompute, stage, linears);
    case ModelFamily::Llama: return std::make_unique<Llama>(cfg, store, recompute, stage, linears);
  }
  fail("make_model: unknown model family");
}

}  // namespace gpt
