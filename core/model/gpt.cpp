#include "core/model/gpt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

GPT::GPT(const GPTConfig& cfg, ParamStore& store, Recompute recompute)
    : cfg_(cfg), store_(store), shared_acts_(std::make_shared<BlockActs>()) {
  cfg_.validate();
  const int64_t C = cfg.n_embd;
  // Embeddings get no weight decay (GPT-2 practice); the tied head shares wte.
  wte = store.add("wte", {cfg.vocab_size, C}, /*decay=*/false, 0.02f);
  wpe = store.add("wpe", {cfg.block_size, C}, /*decay=*/false, 0.01f);
  blocks_begin_ = store.total();
  for (int l = 0; l < cfg.n_layer; ++l)
    blocks_.push_back(std::make_unique<Block>(store, "blocks." + std::to_string(l), cfg, recompute, shared_acts_));
  lnf_ = std::make_unique<LayerNorm>(store, "lnf", C);
}

int64_t head_chunk_rows(int64_t N, int64_t V) {
  const int64_t cap = (int64_t(1) << 27) / (V > 0 ? V : 1);
  return std::max<int64_t>(1, std::min(N, cap));
}

void GPT::forward_trunk(const Tensor& tokens) {
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = cfg_.n_embd;
  GPT_CHECK(T <= cfg_.block_size, "sequence length " + std::to_string(T) +
                                      " exceeds model.block_size " +
                                      std::to_string(cfg_.block_size));
  const Device dev = store_.device();
  const DType act = store_.compute_dtype();  // activations follow the compute copies
  tokens_ = tokens;
  head_grad_ready_ = false;
  resid_.resize(blocks_.size() + 1);
  for (auto& r : resid_) ensure(r, {B, T, C}, act, dev);
  ops_for(dev).encoder_forward(resid_[0], tokens, wte->compute, wpe->compute);
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(resid_[l + 1], resid_[l]);
  ensure(lnf_out_, {B, T, C}, act, dev);
  lnf_->forward(lnf_out_, resid_.back());
}

float GPT::head_loss(const Tensor& targets, const float* dloss) {
  const int64_t N = lnf_out_.dim(0) * lnf_out_.dim(1), C = cfg_.n_embd, V = cfg_.vocab_size;
  const Device dev = store_.device();
  const Ops& ops = ops_for(dev);
  GPT_CHECK(targets.numel() == N, "targets must have the shape of the tokens [B, T]");
  const int64_t rows = head_chunk_rows_ > 0 ? std::min(head_chunk_rows_, N) : head_chunk_rows(N, V);
  ensure(logits_, {rows, V}, lnf_out_.dtype, dev);
  ensure(losses_, {N}, DType::F32, dev);
  // Not zeroed: each chunk's matmul_backward overwrites its own rows of dlnf_.
  if (dloss) ensure(dlnf_, lnf_out_.shape, lnf_out_.dtype, dev);
  const Tensor x = lnf_out_.view({N, C}), flat_targets = targets.view({N});
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    const Tensor xc = x.slice(r0 * C, {n, C}), tc = flat_targets.slice(r0, {n});
    Tensor logits = logits_.slice(0, {n, V}), losses = losses_.slice(r0, {n});
    ops.matmul_forward(logits, xc, wte->compute, nullptr);
    if (!dloss) {
      ops.cross_entropy_forward(losses, logits, tc);
      continue;
    }
    // The fused classifier: losses, and the logits turned into their gradient in place,
    // then straight back through the tied projection (dwte += dlogits^T x, dx = dlogits wte).
    ops.cross_entropy_forward_backward(losses, logits, tc, *dloss);
    Tensor dx = dlnf_.view({N, C}).slice(r0 * C, {n, C});
    ops.matmul_backward(&dx, wte->grad, nullptr, logits, xc, wte->compute);
  }
  std::vector<float> host = to_host_f32(losses_);
  double sum = 0.0;
  for (float l : host) sum += l;
  return float(sum / double(host.size()));
}

float GPT::forward(const Tensor& tokens, const Tensor* targets) {
  forward_trunk(tokens);
  if (targets) return head_loss(*targets, nullptr);
  const int64_t B = tokens.dim(0), T = tokens.dim(1), V = cfg_.vocab_size;
  ensure(logits_, {B, T, V}, lnf_out_.dtype, store_.device());
  ops_for(store_.device()).matmul_forward(logits_, lnf_out_, wte->compute, nullptr);
  return std::numeric_limits<float>::quiet_NaN();
}

float GPT::forward_train(const Tensor& tokens, const Tensor& targets, float dloss) {
  forward_trunk(tokens);
  const float loss = head_loss(targets, &dloss);
  head_grad_ready_ = true;
  return loss;
}

void GPT::backward() {
  GPT_CHECK(head_grad_ready_, "GPT::backward() needs a forward_train() first");
  head_grad_ready_ = false;
  const Ops& ops = ops_for(store_.device());
  auto ready = [&](int64_t begin, int64_t end) {
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
  };

  // The head's part was done by forward_train: dlnf_ holds the final LayerNorm's output
  // gradient and wte->grad the head's share of the tied embedding's gradient.
  ensure(dres_, lnf_out_.shape, lnf_out_.dtype, store_.device());
  zero_(dres_);
  lnf_->backward(dres_, dlnf_, resid_.back());
  ready(lnf_->weight->offset, store_.total());

  int64_t end = lnf_->weight->offset;
  for (size_t l = blocks_.size(); l-- > 0;) {
    blocks_[l]->backward(dres_, resid_[l], scratch_);
    int64_t begin = blocks_[l]->ln1.weight->offset;
    ready(begin, end);
    end = begin;
  }
  ops.encoder_backward(wte->grad, wpe->grad, dres_, tokens_);
  ready(0, blocks_begin_);
}

}  // namespace gpt
