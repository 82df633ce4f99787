// GPT-2: token + learned position embedding, n_layer pre-LayerNorm blocks
// (core/layers/block.h), a final LayerNorm and a language-model head tied to the token
// embedding. The stage loop is the shared decoder's (decoder.h); this file names the
// family's parts.
#pragma once
#include <memory>

#include "core/layers/block.h"
#include "core/model/decoder.h"

namespace gpt {

struct Gpt2Parts {
  using Block = ::gpt::Block;
  using BlockActs = ::gpt::BlockActs;
  using BlockScratch = ::gpt::BlockScratch;
  using Norm = LayerNorm;
  using NormStats = LayerNormStats;
  static constexpr ModelFamily kFamily = ModelFamily::GPT2;
  static constexpr bool kLearnedPositions = true;
  // "lnf", named to the linears as a norm (sequence parallelism sums its gradients).
  static std::unique_ptr<LayerNorm> make_norm(ParamStore& store, const GPTConfig& cfg, const LinearFactory& linears);
  // After a training forward of global layer `layer`: an MoE block keeps the auxiliary
  // losses' gradient scale for its backward and adds its losses and load to `step`.
  static void after_train_forward(Block& block, BlockActs& acts, int layer, float aux_grad_scale, MoeStepStats& step);
};

class GPT final : public Decoder<Gpt2Parts> {
 public:
  using Decoder::Decoder;
};

}  // namespace gpt
