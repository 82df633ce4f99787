// GPT-2: token + position embedding, n_layer blocks, final LayerNorm, and a language
// model head tied to the token embedding. Single-device code: parallel/ wraps it.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/layers/block.h"
#include "core/model/gpt_config.h"
#include "core/param_store.h"

namespace gpt {

// Rows of logits the LM head makes at once for N positions over a vocabulary of V:
// at most 2^27 logits (256 MiB in bf16; about 2,600 rows at GPT-2's 50,257), which
// keeps the head's buffer small next to the model while its GEMMs still have thousands
// of rows to run at full speed.
int64_t head_chunk_rows(int64_t N, int64_t V);

class GPT {
 public:
  // Registers every parameter in `store`; call store.materialize() and store.init()
  // (or load a checkpoint) before forward.
  GPT(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None);

  // tokens, targets: I32 [B, T] on the model's device; no gradient is prepared.
  // With targets: the mean cross-entropy over the B*T positions, the logits made a
  // chunk of rows at a time and dropped. Without: NaN, and logits() holds all of them.
  float forward(const Tensor& tokens, const Tensor* targets);
  // The training forward: the mean cross-entropy, and on the way, chunk by chunk, the
  // fused classifier pushes the gradient of sum_i dloss * loss_i (dloss = 1/(B*T) gives
  // the gradient of the mean) through the head: the wte gradient accumulates here and
  // the head's input gradient waits for backward(). So no [B, T, V] tensor ever exists
  // and the logits are read once for the loss and the gradient together.
  float forward_train(const Tensor& tokens, const Tensor& targets, float dloss);
  // Accumulates the remaining parameter gradients of the last forward_train.
  void backward();

  const Tensor& logits() const { return logits_; }  // [B, T, V] after forward(tokens, nullptr)
  // Rows of logits the head makes at once (0: head_chunk_rows(), the default).
  void set_head_chunk_rows(int64_t rows) { head_chunk_rows_ = rows; }
  const GPTConfig& config() const { return cfg_; }
  Device device() const { return store_.device(); }

  // Called during backward each time the gradients of a contiguous range of the flat
  // parameter buffer are final, in reverse layer order (data parallelism hooks in here).
  std::function<void(int64_t begin, int64_t end)> on_grads_ready;

 private:
  GPTConfig cfg_;
  ParamStore& store_;
  Param* wte;
  Param* wpe;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<LayerNorm> lnf_;
  int64_t blocks_begin_ = 0;  // flat offsets that delimit the layers' parameters

  // The blocks and the final LayerNorm into lnf_out_ (shared by every forward).
  void forward_trunk(const Tensor& tokens);
  // The head over lnf_out_ in chunks of rows: losses, and with dloss the fused gradient.
  float head_loss(const Tensor& targets, const float* dloss);

  Tensor tokens_;                  // the last forward's input (a view, not a copy)
  bool head_grad_ready_ = false;   // forward_train ran and backward() has not yet
  int64_t head_chunk_rows_ = 0;
  std::vector<Tensor> resid_;      // [L+1] x [B,T,C]: input of each block, then the output
  Tensor lnf_out_, logits_, losses_, dres_, dlnf_;
  BlockScratch scratch_;
  std::shared_ptr<BlockActs> shared_acts_;  // buffers reused by every block when recomputing
};

}  // namespace gpt
