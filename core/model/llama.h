// The LLaMA family: token embedding (no learned positions), n_layer pre-RMSNorm blocks
// with RoPE, grouped-query attention and SwiGLU (core/layers/llama_block.h), a final
// RMSNorm and an LM head, untied from the embedding unless model.tie_embeddings.
// The second family of the shared decoder (decoder.h): the embedding and head
// (TokenEmbedding, whole or vocabulary-parallel), the chunked fused classifier and the
// stage loop are the ones GPT-2 runs; this file names the family's parts.
#pragma once
#include <memory>

#include "core/layers/llama_block.h"
#include "core/layers/rmsnorm.h"
#include "core/model/decoder.h"

namespace gpt {

struct LlamaParts {
  using Block = LlamaBlock;
  using BlockActs = LlamaBlockActs;
  using BlockScratch = LlamaBlockScratch;
  using Norm = RMSNorm;
  using NormStats = Tensor;  // rstd per row
  static constexpr ModelFamily kFamily = ModelFamily::Llama;
  static constexpr bool kLearnedPositions = false;
  // "lnf", named to the linears as a norm (sequence parallelism sums its gradient).
  static std::unique_ptr<RMSNorm> make_norm(ParamStore& store, const GPTConfig& cfg, const LinearFactory& linears);
  // No MoE blocks in this family yet: nothing to record.
  static void after_train_forward(LlamaBlock&, LlamaBlockActs&, int, float, MoeStepStats&) {}
};

class Llama final : public Decoder<LlamaParts> {
 public:
  using Decoder::Decoder;
};

}  // namespace gpt
