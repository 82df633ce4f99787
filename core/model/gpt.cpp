#include "core/model/gpt.h"

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

float GPT::forward(const Tensor& tokens, const Tensor* targets) {
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = cfg_.n_embd, V = cfg_.vocab_size;
  GPT_CHECK(T <= cfg_.block_size, "sequence length " + std::to_string(T) +
                                      " exceeds model.block_size " +
                                      std::to_string(cfg_.block_size));
  const Device dev = store_.device();
  const DType act = store_.compute_dtype();  // activations follow the compute copies
  const Ops& ops = ops_for(dev);
  tokens_ = tokens;
  has_targets_ = targets != nullptr;
  if (targets) targets_ = *targets;

  resid_.resize(blocks_.size() + 1);
  for (auto& r : resid_) ensure(r, {B, T, C}, act, dev);
  ops.encoder_forward(resid_[0], tokens, wte->compute, wpe->compute);
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(resid_[l + 1], resid_[l]);
  ensure(lnf_out_, {B, T, C}, act, dev);
  lnf_->forward(lnf_out_, resid_.back());
  ensure(logits_, {B, T, V}, act, dev);
  ops.matmul_forward(logits_, lnf_out_, wte->compute, nullptr);
  if (!targets) return std::numeric_limits<float>::quiet_NaN();

  ensure(losses_, {B * T}, DType::F32, dev);
  Tensor flat_targets = targets->view({B * T});
  ops.cross_entropy_forward(losses_, logits_.view({B * T, V}), flat_targets);
  std::vector<float> host = to_host_f32(losses_);
  double sum = 0.0;
  for (float l : host) sum += l;
  return float(sum / double(host.size()));
}

void GPT::backward(float dloss) {
  GPT_CHECK(has_targets_, "GPT::backward() needs a forward pass with targets");
  const int64_t B = tokens_.dim(0), T = tokens_.dim(1), V = cfg_.vocab_size;
  const Ops& ops = ops_for(store_.device());
  auto ready = [&](int64_t begin, int64_t end) {
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
  };

  // Head: dlogits overwrite the logits in place, then the tied wte gets its first part.
  Tensor logits2d = logits_.view({B * T, V});
  ops.cross_entropy_backward(logits2d, logits2d, targets_.view({B * T}), dloss);
  ensure(dlnf_, lnf_out_.shape, lnf_out_.dtype, store_.device());
  zero_(dlnf_);
  ops.matmul_backward(&dlnf_, wte->grad, nullptr, logits_, lnf_out_, wte->compute);
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
