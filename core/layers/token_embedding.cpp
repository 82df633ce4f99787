#include "core/layers/token_embedding.h"

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

TokenEmbedding::TokenEmbedding(ParamStore& store, int64_t V, int64_t C, const std::string& name)
    : TokenEmbedding(store, V, C, ShardSpec{}, name) {}

// Embeddings get no weight decay (GPT-2 practice). Every stage and every split draws
// wte from its global name, so any slice starts equal to the whole model's rows.
TokenEmbedding::TokenEmbedding(ParamStore& store, int64_t V, int64_t C, ShardSpec shard, const std::string& name)
    : weight(store.add(name, {V, C}, /*decay=*/false, 0.02f, 0.f, shard)), V_(V) {}

// Without positions the lookup is the vocabulary-slice op over the whole table (the
// same rows, no position added).
void TokenEmbedding::forward(Tensor& out, const Tensor& tokens, const Tensor* wpe) {
  const Ops& ops = ops_for(out.device);
  if (wpe) ops.encoder_forward(out, tokens, weight->compute, *wpe);
  else ops.encoder_slice_forward(out, tokens, weight->compute, nullptr, 0, V_);
}

void TokenEmbedding::backward(Tensor* dwpe, const Tensor& dout, const Tensor& tokens) {
  const Ops& ops = ops_for(dout.device);
  if (dwpe) ops.encoder_backward(weight->grad, *dwpe, dout, tokens);
  else {
    Tensor no_positions;  // undefined: the op adds no position gradient
    ops.encoder_slice_backward(weight->grad, no_positions, dout, tokens, 0);
  }
}

void TokenEmbedding::head_loss(Tensor& losses, Tensor& logits, const Tensor& x, const Tensor& targets,
                               const float* dloss, Tensor* dx) {
  const Ops& ops = ops_for(x.device);
  ops.matmul_forward(logits, x, weight->compute, nullptr);
  if (!dloss) {
    ops.cross_entropy_forward(losses, logits, targets);
    return;
  }
  // The fused classifier: losses, and the logits turned into their gradient in place,
  // then straight back through the tied projection (dwte += dlogits^T x, dx = dlogits wte).
  ops.cross_entropy_forward_backward(losses, logits, targets, *dloss);
  ops.matmul_backward(dx, weight->grad, nullptr, logits, x, weight->compute);
}

void TokenEmbedding::head_logits(Tensor& out, const Tensor& x) {
  ops_for(x.device).matmul_forward(out, x, weight->compute, nullptr);
}

std::vector<float> TokenEmbedding::vocabulary_row(const Tensor& row) {
  GPT_CHECK(row.numel() == V_, "TokenEmbedding::vocabulary_row: a row of " + std::to_string(row.numel()) +
                                   " logits, the vocabulary has " + std::to_string(V_));
  return to_host_f32(row);
}

int64_t padded_vocab(int64_t V, int tp) {
  if (tp <= 1) return V;
  const int64_t unit = kVocabSliceAlign * tp;
  return (V + unit - 1) / unit * unit;
}

}  // namespace gpt
