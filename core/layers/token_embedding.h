// The token embedding wte [V, C] and the language-model head tied to it (GPT-2 ties
// them): the lookup in front of the blocks, and behind them the logits x wte^T with their
// softmax cross-entropy, fused with its backward. A model with an untied head (LLaMA's
// default) makes two: "wte" used for the lookup only and "lm_head" for the head only. Virtual so parallel/ can substitute a
// vocabulary-parallel version from outside (parallel/tensor/vocab_parallel.h) without
// the model knowing: the model asks its LinearFactory for this layer too.
//
// Dimension letters: B batch, T time, C channels, V the real vocabulary, N = B*T rows;
// Vs the rows of wte this object holds (V when whole; a padded slice under TP).
#pragma once
#include <string>
#include <vector>

#include "core/param_store.h"

namespace gpt {

class TokenEmbedding {
 public:
  // The whole table [V, C], registered under `name` (no weight decay, N(0, 0.02)).
  TokenEmbedding(ParamStore& store, int64_t V, int64_t C, const std::string& name = "wte");
  virtual ~TokenEmbedding() = default;

  // out[B,T,C] = wte[tokens] + wpe[t]; wpe null: no learned positions (RoPE models).
  // (A vocabulary-parallel version may be given an out of only this rank's sequence
  // shard of the B*T rows: LinearFactory::sequence_rows.)
  virtual void forward(Tensor& out, const Tensor& tokens, const Tensor* wpe);
  // wte->grad (this object's rows) and *dwpe (when given) += the lookup's gradients.
  virtual void backward(Tensor* dwpe, const Tensor& dout, const Tensor& tokens);

  // The head runs over all N = B*T rows of x [N, C]. When the model holds only a shard of
  // them (sequence parallelism), head_input gives the rows of every rank (a view of
  // scratch, valid until head_input_grad_done) and head_input_grad the buffer of all N
  // rows that head_loss writes d(x) into; head_input_grad_done then leaves the model's
  // rows of d(x) in dx. Whole rows: x and dx themselves.
  virtual Tensor head_input(const Tensor& x, int64_t N) {
    (void)N;
    return x;
  }
  virtual Tensor head_input_grad(Tensor& dx, int64_t N) {
    (void)N;
    return dx;
  }

  // The head over one chunk of n rows x [n, C]: losses[n] (F32) and, with dloss, the
  // fused backward: dx[n, C] overwritten with this object's share of d(x) (complete
  // once head_input_grad_done has run), wte->grad += dlogits^T x. `logits` is scratch
  // [n, logit_columns()], overwritten.
  virtual void head_loss(Tensor& losses, Tensor& logits, const Tensor& x, const Tensor& targets,
                         const float* dloss, Tensor* dx);
  // After every chunk's head_loss with dloss into head_input_grad(dx, N): completes dx.
  virtual void head_input_grad_done(Tensor& dx, int64_t N) {
    (void)dx;
    (void)N;
  }
  // Logits for sampling: out[.., logit_columns()] = x wte^T over this object's rows.
  void head_logits(Tensor& out, const Tensor& x);
  // One row of head_logits' output (this object's columns) as the V logits of the whole
  // vocabulary, on the host.
  virtual std::vector<float> vocabulary_row(const Tensor& row);

  int64_t vocab_size() const { return V_; }
  int64_t logit_columns() const { return weight->shape[0]; }  // Vs
  Param* weight;  // wte: the whole [V, C], or this rank's padded slice

 protected:
  // A slice of wte given by `shard` (parallel/ builds these).
  TokenEmbedding(ParamStore& store, int64_t V, int64_t C, ShardSpec shard, const std::string& name);
  int64_t V_;
};

// Rows of wte a vocabulary-parallel split over tp ranks holds in all, Vp: V rounded up
// so that every rank's slice is a whole number of kVocabSliceAlign rows. 64 rows keep each
// slice's head GEMM (Vs output columns) on whole tensor-core tiles in bf16 and cost
// little: GPT-2's 50,257 becomes 50,304 at tp 1 (as llm.c pads it) and 50,432 at tp 4
// (0.35% more head work). tp <= 1: V itself (the whole wte is never padded).
constexpr int64_t kVocabSliceAlign = 64;
int64_t padded_vocab(int64_t V, int tp);

}  // namespace gpt
