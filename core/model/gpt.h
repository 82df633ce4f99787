// GPT-2: token + position embedding, n_layer blocks, final LayerNorm, and a language
// model head tied to the token embedding. Single-device code built for a layer range
// (core/model/model.h): parallel/ decides which ranges exist and where they run.
#pragma once
#include <memory>
#include <vector>

#include "core/layers/block.h"
#include "core/layers/head_loss.h"
#include "core/model/gpt_config.h"
#include "core/model/model.h"
#include "core/param_store.h"

namespace gpt {

// One micro-batch of GPT activations (see Activations).
struct GPTActivations : Activations {
  Tensor tokens;               // the embedding stage's input (a view, not a copy)
  int64_t B = 0, T = 0;        // the micro-batch's shape
  // [blocks+1] x [B,T,C] (or this rank's [B*T/tp, C] sequence shard): each block's input,
  // then the output
  std::vector<Tensor> resid;
  std::vector<BlockActs> blocks;
  LayerNormStats lnf_stats;
  Tensor lnf_out, dlnf, dres;  // dres: the residual stream's gradient during backward
  bool head_grad_ready = false;  // forward_train ran, backward not yet
  bool weight_pass_due = false;  // backward_input ran, backward_weight not yet
};

class GPT : public Model {
 public:
  // Registers this stage's parameters in `store` (global names), in the order backward
  // finishes them last-to-first: [wte, wpe] [blocks] [lnf] and, on a head stage without
  // the embedding, the tied head's own copy of wte last. Call store.materialize() and
  // store.init() (or load a checkpoint) before forward.
  // `linears`: null for whole linears; tensor parallelism passes its plan.
  GPT(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None,
      StageSpec stage = {}, const LinearFactory* linears = nullptr);

  const StageSpec& stage() const override { return stage_; }
  Device device() const override { return store_.device(); }
  std::unique_ptr<Activations> make_activations() const override;
  float forward_train(Activations& acts, const Tensor& input, const Tensor* targets,
                      float dloss) override;
  void backward(Activations& acts, const Tensor* dout) override;
  void backward_input(Activations& acts, const Tensor* dout) override;
  void backward_weight(Activations& acts) override;
  float forward(Activations& acts, const Tensor& input, const Tensor* targets) override;
  std::vector<double> row_losses() const override { return head_loss_.row_losses(); }

  // After forward() without targets, the logits of flat position b*T + t over the whole
  // vocabulary (V values, on the host), whatever slice of them this model computed.
  // Under tensor parallelism a collective: every rank of the TP group calls it.
  std::vector<float> vocabulary_logits(const Activations& acts, int64_t position) const;

  // Rows of logits the head makes at once (0: head_chunk_rows(), the default).
  void set_head_chunk_rows(int64_t rows) { head_loss_.set_chunk_rows(rows); }
  // Under sequence parallelism a stage without the embedding is handed its rows of the
  // residual stream, [B*T/tp, C], which do not say B and T (attention needs them): the
  // pipeline tells it the micro-batch shape here. Whole [B, T, C] inputs say it themselves.
  void set_micro_batch(int64_t B, int64_t T) override { micro_B_ = B, micro_T_ = T; }
  const GPTConfig& config() const { return cfg_; }

 private:
  GPTConfig cfg_;
  StageSpec stage_;
  ParamStore& store_;
  std::unique_ptr<TokenEmbedding> wte_;  // the embedding's and/or the tied head's
  Param* wpe = nullptr;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<LayerNorm> lnf_;
  int64_t blocks_begin_ = 0, blocks_end_ = 0;  // flat offsets of the blocks' parameters

  static GPTActivations& cast(Activations& acts);
  // Embedding (or the handed-over input) and the blocks; on a head stage also lnf_out.
  void forward_trunk(GPTActivations& a, const Tensor& input);
  // The head over lnf_out in chunks of rows: losses, and with dloss the fused gradient.
  float head_loss(GPTActivations& a, const Tensor& targets, const float* dloss);
  // backward (split = false) or its input pass (split = true).
  void run_backward(GPTActivations& a, const Tensor* dout, bool split);

  int64_t micro_B_ = 0, micro_T_ = 0;  // set_micro_batch
  const LinearFactory* linears_;       // null: whole linears; else asked for sequence_rows
  ChunkedHeadLoss head_loss_;          // shared by every micro-batch
  // Scratch shared by every micro-batch: used only inside one call.
  BlockScratch scratch_;
  std::shared_ptr<BlockActs> shared_acts_;  // buffers reused by every block when recomputing
};

}  // namespace gpt
