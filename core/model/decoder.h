// The decoder-only stage both model families share: token embedding (plus learned
// positions for GPT-2), n_layer pre-norm blocks, a final norm and an LM head over the
// chunked fused classifier. Single-device code built for a layer range (model.h):
// parallel/ decides which ranges exist and where they run, and passes its LinearFactory
// to split the layers. A family supplies its parts (the block, its saved activations
// and scratch, the final norm); the stage loop, pipelines' hand-over, sequence-parallel
// rows, split backward and gradient-ready callbacks are written once, here.
//
// A family's Parts (see gpt.h and llama.h) provides:
//   Block, BlockActs, BlockScratch  the block: Block(store, prefix, cfg, recompute,
//       shared BlockActs, linears, global layer index); forward(acts, x_out, x_in, B, T); backward,
//       backward_input (acts, dres, x_in, scratch); backward_weights(acts);
//       first_param_offset();
//   Norm, NormStats  the final norm: forward(out, stats, x), backward(dx, dout, x, stats);
//   make_norm(store, cfg, linears)  registers "lnf" (and names it to the linears);
//   after_train_forward(block, block_acts, layer, aux_grad_scale, MoeStepStats&)  after
//       each training forward of a block: MoE bookkeeping (a no-op for dense families);
//   kFamily, kLearnedPositions.
#pragma once
#include <memory>
#include <utility>
#include <vector>

#include "core/layers/head_loss.h"
#include "core/layers/linear.h"
#include "core/layers/recompute.h"
#include "core/model/gpt_config.h"
#include "core/model/model.h"
#include "core/param_store.h"

namespace gpt {

// One micro-batch of activations (see Activations).
template <class Parts>
struct DecoderActivations : Activations {
  Tensor tokens;         // the embedding stage's input (a view, not a copy)
  int64_t B = 0, T = 0;  // the micro-batch's shape
  // [blocks+1] x [B,T,C] (or this rank's [B*T/tp, C] sequence shard): each block's input,
  // then the output
  std::vector<Tensor> resid;
  std::vector<typename Parts::BlockActs> blocks;
  typename Parts::NormStats norm_stats;  // the final norm's
  Tensor norm_out, dnorm, dres;          // dres: the residual stream's gradient during backward
  bool head_grad_ready = false;          // forward_train ran, backward not yet
  bool weight_pass_due = false;          // backward_input ran, backward not yet
};

template <class Parts>
class Decoder : public Model {
 public:
  // Registers this stage's parameters in `store` (global names), in the order backward
  // finishes them last-to-first: [wte (, wpe)] [blocks] [lnf, and lm_head when untied, or
  // on a head stage without the embedding the tied head's own copy of wte, whose
  // gradient a pipeline sums with the first stage's]. Call store.materialize() and
  // store.init() (or load a checkpoint) before forward.
  // `linears`: null for whole linears; tensor parallelism passes its plan.
  Decoder(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None, StageSpec stage = {},
          const LinearFactory* linears = nullptr);

  const StageSpec& stage() const override { return stage_; }
  Device device() const override { return store_.device(); }
  std::unique_ptr<Activations> make_activations() const override;
  float forward_train(Activations& acts, const Tensor& input, const Tensor* targets, float dloss) override;
  void backward(Activations& acts, const Tensor* dout) override;
  void backward_input(Activations& acts, const Tensor* dout) override;
  void backward_weight(Activations& acts) override;
  float forward(Activations& acts, const Tensor& input, const Tensor* targets) override;
  std::vector<double> row_losses() const override { return head_loss_.row_losses(); }
  MoeStepStats take_moe_stats() override { return std::exchange(moe_step_, MoeStepStats{}); }
  const GPTConfig& config() const override { return cfg_; }
  std::vector<float> vocabulary_logits(const Activations& acts, int64_t position) const override;
  void set_head_chunk_rows(int64_t rows) override { head_loss_.set_chunk_rows(rows); }
  void set_micro_batch(int64_t B, int64_t T) override { micro_B_ = B, micro_T_ = T; }

 private:
  using Acts = DecoderActivations<Parts>;
  GPTConfig cfg_;
  StageSpec stage_;
  ParamStore& store_;
  const LinearFactory* linears_;             // null: whole linears; else asked for sequence_rows
  std::unique_ptr<TokenEmbedding> wte_;      // the lookup, and the head when tied
  Param* wpe_ = nullptr;                     // learned positions (GPT-2)
  std::unique_ptr<TokenEmbedding> lm_head_;  // an untied head
  TokenEmbedding* head_ = nullptr;           // the head stage's head: lm_head_ or wte_
  std::vector<std::unique_ptr<typename Parts::Block>> blocks_;
  std::unique_ptr<typename Parts::Norm> norm_;
  // Flat offsets: the blocks' parameters [blocks_begin_, blocks_end_), all of this
  // stage's [.., params_end_).
  int64_t blocks_begin_ = 0, blocks_end_ = 0, params_end_ = 0;
  // Each block's experts' parameters, within the store's experts' region (offsets from
  // ParamStore::expert_begin(), known once the store is materialized); empty ranges for
  // dense blocks.
  std::vector<std::pair<int64_t, int64_t>> block_experts_;
  int64_t micro_B_ = 0, micro_T_ = 0;  // set_micro_batch
  MoeStepStats moe_step_;              // since the last take_moe_stats

  static Acts& cast(Activations& acts);
  // Reports block l's parameters final: its dense range [begin, end) and its experts'.
  void report_block(size_t l, int64_t begin, int64_t end);
  // Embedding (or the handed-over input) and the blocks; on a head stage also norm_out.
  void forward_trunk(Acts& a, const Tensor& input);
  // backward (split = false) or its input pass (split = true).
  void run_backward(Acts& a, const Tensor* dout, bool split);

  ChunkedHeadLoss head_loss_;  // shared by every micro-batch
  // Scratch shared by every micro-batch: used only inside one call.
  typename Parts::BlockScratch scratch_;
  // Buffers reused by every block when recomputing.
  std::shared_ptr<typename Parts::BlockActs> shared_acts_;
};

}  // namespace gpt
