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

class GPT {
 public:
  // Registers every parameter in `store`; call store.materialize() and store.init()
  // (or load a checkpoint) before forward.
  GPT(const GPTConfig& cfg, ParamStore& store, Recompute recompute = Recompute::None);

  // tokens, targets: I32 [B, T] on the model's device. Returns the mean cross-entropy
  // over the B*T positions, or NaN when targets is null (logits only).
  float forward(const Tensor& tokens, const Tensor* targets);
  // Accumulates parameter gradients of sum_i dloss * loss_i over the positions of the
  // last forward (dloss = 1/(B*T) gives the gradient of the mean). Destroys logits.
  void backward(float dloss);

  const Tensor& logits() const { return logits_; }  // [B, T, V], valid after forward
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

  Tensor tokens_, targets_;        // the last forward's inputs (views, not copies)
  bool has_targets_ = false;
  std::vector<Tensor> resid_;      // [L+1] x [B,T,C]: input of each block, then the output
  Tensor lnf_out_, logits_, losses_, dres_, dlnf_;
  BlockScratch scratch_;
  std::shared_ptr<BlockActs> shared_acts_;  // buffers reused by every block when recomputing
};

}  // namespace gpt
