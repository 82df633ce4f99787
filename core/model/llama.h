// The LLaMA family: token embedding (no learned positions), n_layer pre-RMSNorm blocks
// with RoPE, grouped-query attention and SwiGLU (core/layers/llama_block.h), a final
// RMSNorm and an LM head, untied from the embedding unless model.tie_embeddings.
// A second implementation of the model interface (core/model/model.h) beside GPT: the
// embedding and head (TokenEmbedding, whole or vocabulary-parallel) and the chunked
// fused classifier (ChunkedHeadLoss) are the same objects GPT uses.
#pragma once
#include <memory>
#include <vector>

#include "core/layers/head_loss.h"
#include "core/layers/llama_block.h"
#include "core/model/model.h"
#include "core/param_store.h"

namespace gpt {

// One micro-batch of LLaMA activations (see Activations).
struct LlamaActivations : Activations {
  Tensor tokens;               // the embedding stage's input (a view, not a copy)
  std::vector<Tensor> resid;   // [blocks+1] x [B,T,C]: each block's input, then the output
  std::vector<LlamaBlockActs> blocks;
  Tensor norm_rstd;            // the final RMSNorm's statistics
  Tensor norm_out, dnorm, dres;  // dres: the residual stream's gradient during backward
  bool head_grad_ready = false;  // forward_train ran, backward not yet
  bool weight_pass_due = false;  // backward_input ran, backward_weight not yet
};

class Llama : public Model {
 public:
  // Registers this stage's parameters in `store` (global names), in the order backward
  // finishes them last-to-first: [wte] [blocks] [lnf, lm_head] (a tied head: no lm_head;
  // on a head stage without the embedding, its own copy of wte, as GPT's).
  // `linears`: null for whole linears; tensor parallelism passes its plan.
  Llama(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None, StageSpec stage = {},
        const LinearFactory* linears = nullptr);

  const StageSpec& stage() const override { return stage_; }
  Device device() const override { return store_.device(); }
  std::unique_ptr<Activations> make_activations() const override;
  float forward_train(Activations& acts, const Tensor& input, const Tensor* targets, float dloss) override;
  void backward(Activations& acts, const Tensor* dout) override;
  void backward_input(Activations& acts, const Tensor* dout) override;
  void backward_weight(Activations& acts) override;
  float forward(Activations& acts, const Tensor& input, const Tensor* targets) override;
  const GPTConfig& config() const override { return cfg_; }
  std::vector<float> vocabulary_logits(const Activations& acts, int64_t position) const override;
  void set_head_chunk_rows(int64_t rows) override { head_loss_.set_chunk_rows(rows); }
  std::vector<double> row_losses() const override { return head_loss_.row_losses(); }

 private:
  GPTConfig cfg_;
  StageSpec stage_;
  ParamStore& store_;
  std::unique_ptr<TokenEmbedding> wte_;      // the lookup, and the head when tied
  std::unique_ptr<TokenEmbedding> lm_head_;  // an untied head
  TokenEmbedding* head_ = nullptr;           // the head stage's head: lm_head_ or wte_
  std::vector<std::unique_ptr<LlamaBlock>> blocks_;
  std::unique_ptr<RMSNorm> norm_;
  // Flat offsets: the blocks' parameters [blocks_begin_, blocks_end_), all of this
  // stage's [.., params_end_).
  int64_t blocks_begin_ = 0, blocks_end_ = 0, params_end_ = 0;

  static LlamaActivations& cast(Activations& acts);
  // Embedding (or the handed-over input) and the blocks; on a head stage also norm_out.
  void forward_trunk(LlamaActivations& a, const Tensor& input);
  // backward (split = false) or its input pass (split = true).
  void run_backward(LlamaActivations& a, const Tensor* dout, bool split);

  ChunkedHeadLoss head_loss_;  // shared by every micro-batch
  // Scratch shared by every micro-batch: used only inside one call.
  LlamaBlockScratch scratch_;
  std::shared_ptr<LlamaBlockActs> shared_acts_;  // buffers reused by every block when recomputing
};

}  // namespace gpt
