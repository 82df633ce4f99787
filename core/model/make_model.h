// The one place that maps a configuration's model.family to its Model implementation:
// the trainer, the pipeline and the sampler build models through it and otherwise see
// only the model interface (core/model/model.h).
#pragma once
#include <memory>

#include "core/layers/block.h"
#include "core/layers/linear.h"
#include "core/model/model.h"
#include "core/param_store.h"

namespace gpt {

// GPT (family gpt2) or Llama (family llama), registering this stage's parameters in
// `store`; arguments as GPT's constructor (core/model/gpt.h).
std::unique_ptr<Model> make_model(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None,
                                  StageSpec stage = {}, const LinearFactory* linears = nullptr);

}  // namespace gpt
