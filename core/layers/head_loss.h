// The language-model head's loss over a [B, T, C] stream, chunked by rows: the model
// families share it (GPT ties its head to wte, LLaMA usually has its own lm_head; both
// are a TokenEmbedding, whole or vocabulary-parallel). Only `rows` x Vs logits exist
// at a time, and with a loss gradient each chunk's logits are turned into their
// gradient in place and pushed straight back through the head (the fused classifier),
// so no [B, T, V] tensor is ever made.
//
// Dimension letters: B batch, T time, C channels, N = B*T rows, Vs the logit columns
// the head computes (V whole, or a tensor-parallel rank's slice).
#pragma once
#include <cstdint>
#include <vector>

#include "core/layers/token_embedding.h"

namespace gpt {

// Rows of logits the LM head makes at once for N positions over `columns` logits per row
// (the vocabulary V, or a rank's slice of it under tensor parallelism): at most 2^27
// logits (256 MiB in bf16; about 2,600 rows at GPT-2's 50,257), which keeps the head's
// buffer small next to the model while its GEMMs still have thousands of rows to run at
// full speed.
int64_t head_chunk_rows(int64_t N, int64_t columns);

class ChunkedHeadLoss {
 public:
  // The mean cross-entropy of x against targets [B, T] through `head`. x is [B, T, C],
  // or under sequence parallelism this rank's rows of it (the head gathers the others:
  // TokenEmbedding::head_input). With dloss (the gradient of each position's loss): dx
  // (shaped like x) is overwritten with d(x), and head.weight->grad accumulates the
  // head's gradient.
  float run(TokenEmbedding& head, const Tensor& x, const Tensor& targets, const float* dloss, Tensor* dx);
  // The last run's mean loss of each row of targets [B, T] (a flat [N] is one row),
  // from the same per-position losses (per-source validation groups them).
  const std::vector<double>& row_losses() const { return row_losses_; }

  // Rows of logits made at once (0: head_chunk_rows(), the default).
  void set_chunk_rows(int64_t rows) { chunk_rows_ = rows; }

 private:
  int64_t chunk_rows_ = 0;
  // Scratch shared by every micro-batch: used only inside one call.
  Tensor logits_, losses_;
  std::vector<double> row_losses_;
};

}  // namespace gpt
