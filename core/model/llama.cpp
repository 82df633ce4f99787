#include "core/model/llama.h"

#include <limits>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

Llama::Llama(const GPTConfig& cfg, ParamStore& store, Recompute recompute, StageSpec stage,
             const LinearFactory* linears)
    : cfg_(cfg), stage_(stage), store_(store), shared_acts_(std::make_shared<LlamaBlockActs>()) {
  cfg_.validate();
  GPT_CHECK(cfg_.family == ModelFamily::Llama, "Llama: built from a model.family = gpt2 configuration");
  if (stage_.layer_end < 0) stage_.layer_end = cfg.n_layer;
  const std::string range = "[" + std::to_string(stage_.layer_begin) + ", " + std::to_string(stage_.layer_end) + ")";
  GPT_CHECK(stage_.layer_begin >= 0 && stage_.layer_begin <= stage_.layer_end && stage_.layer_end <= cfg.n_layer,
            "Llama stage: layer range " + range + " is not within the model's " + std::to_string(cfg.n_layer) +
                " layers");
  GPT_CHECK(stage_.embedding || stage_.head || stage_.layer_begin < stage_.layer_end,
            "Llama stage: layer range " + range + " without embedding or head is empty");
  const int64_t C = cfg.n_embd, V = cfg.vocab_size;
  const LinearFactory whole;
  const LinearFactory& layers = linears ? *linears : whole;
  if (stage_.embedding) wte_ = layers.make_token_embedding(store, V, C, "wte");
  blocks_begin_ = store.total();
  for (int l = stage_.layer_begin; l < stage_.layer_end; ++l)
    blocks_.push_back(std::make_unique<LlamaBlock>(store, "blocks." + std::to_string(l), cfg_, recompute,
                                                   shared_acts_, layers));
  blocks_end_ = store.total();
  if (stage_.head) {
    norm_ = std::make_unique<RMSNorm>(store, "lnf", C, cfg.norm_eps);
    if (!cfg_.tie_embeddings) {
      lm_head_ = layers.make_token_embedding(store, V, C, "lm_head");
      head_ = lm_head_.get();
    } else {
      // As GPT's: a head stage without the embedding holds its own copy of wte, whose
      // gradient a pipeline sums with the first stage's.
      if (!wte_) wte_ = layers.make_token_embedding(store, V, C, "wte");
      head_ = wte_.get();
    }
  }
  params_end_ = store.total();
}

std::unique_ptr<Activations> Llama::make_activations() const {
  auto a = std::make_unique<LlamaActivations>();
  a->blocks.resize(blocks_.size());
  return a;
}

LlamaActivations& Llama::cast(Activations& acts) {
  auto* a = dynamic_cast<LlamaActivations*>(&acts);
  GPT_CHECK(a, "Llama: activations made by another model family");
  return *a;
}

void Llama::forward_trunk(LlamaActivations& a, const Tensor& input) {
  const int64_t B = input.dim(0), T = input.dim(1), C = cfg_.n_embd;
  // RoPE has no table to run out of; block_size is the context the model is meant for.
  GPT_CHECK(T <= cfg_.block_size, "sequence length " + std::to_string(T) + " exceeds model.block_size " +
                                      std::to_string(cfg_.block_size));
  const Device dev = store_.device();
  const DType act = store_.compute_dtype();
  a.head_grad_ready = false;
  a.resid.resize(blocks_.size() + 1);
  for (auto& r : a.resid) ensure(r, {B, T, C}, act, dev);
  if (stage_.embedding) {
    GPT_CHECK(input.dtype == DType::I32 && input.ndim() == 2, "Llama: the embedding stage takes I32 tokens [B, T]");
    a.tokens = input;
    wte_->forward(a.resid[0], input, nullptr);
  } else {
    GPT_CHECK(input.shape == a.resid[0].shape && input.dtype == act,
              "Llama stage: input must be the previous stage's output " + shape_str(a.resid[0].shape) + ", got " +
                  shape_str(input.shape));
    copy_(a.resid[0], input);  // the sender may reuse its buffer; backward needs it
  }
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(a.blocks[l], a.resid[l + 1], a.resid[l]);
  if (stage_.head) {
    ensure(a.norm_out, {B, T, C}, act, dev);
    norm_->forward(a.norm_out, a.norm_rstd, a.resid.back());
  } else {
    a.output = a.resid.back();
  }
}

float Llama::forward(Activations& acts, const Tensor& input, const Tensor* targets) {
  LlamaActivations& a = cast(acts);
  forward_trunk(a, input);
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  if (targets) return head_loss_.run(*head_, a.norm_out, *targets, nullptr, nullptr);
  ensure(a.output, {input.dim(0), input.dim(1), head_->logit_columns()}, a.norm_out.dtype, store_.device());
  head_->head_logits(a.output, a.norm_out);
  return std::numeric_limits<float>::quiet_NaN();
}

std::vector<float> Llama::vocabulary_logits(const Activations& acts, int64_t position) const {
  GPT_CHECK(stage_.head, "Llama::vocabulary_logits: this stage has no head");
  const Tensor& out = acts.output;
  const int64_t Vs = head_->logit_columns();
  GPT_CHECK(out.defined() && out.dim(-1) == Vs && position >= 0 && position * Vs < out.numel(),
            "Llama::vocabulary_logits: no logits at position " + std::to_string(position) +
                " (run forward() without targets first)");
  return head_->vocabulary_row(out.slice(position * Vs, {Vs}));
}

float Llama::forward_train(Activations& acts, const Tensor& input, const Tensor* targets, float dloss) {
  LlamaActivations& a = cast(acts);
  forward_trunk(a, input);
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  GPT_CHECK(targets, "Llama: the head stage's forward_train needs targets");
  ensure(a.dnorm, a.norm_out.shape, a.norm_out.dtype, store_.device());
  const float loss = head_loss_.run(*head_, a.norm_out, *targets, &dloss, &a.dnorm);
  a.head_grad_ready = true;
  return loss;
}

void Llama::backward(Activations& acts, const Tensor* dout) { run_backward(cast(acts), dout, false); }

void Llama::backward_input(Activations& acts, const Tensor* dout) { run_backward(cast(acts), dout, true); }

// The blocks' weight gradients, last block first; each block's parameters are final
// once its weight pass is done (its norms' gradients came in the input pass).
void Llama::backward_weight(Activations& acts) {
  LlamaActivations& a = cast(acts);
  GPT_CHECK(a.weight_pass_due, "Llama::backward_weight() needs a backward_input() of the same activations first");
  a.weight_pass_due = false;
  int64_t end = blocks_end_;
  for (size_t l = blocks_.size(); l-- > 0;) {
    blocks_[l]->backward_weights(a.blocks[l]);
    const int64_t begin = blocks_[l]->first_param_offset();
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
    end = begin;
  }
}

void Llama::run_backward(LlamaActivations& a, const Tensor* dout, bool split) {
  auto ready = [&](int64_t begin, int64_t end) {
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
  };
  const Tensor& out = a.resid.back();
  ensure(a.dres, out.shape, out.dtype, store_.device());
  if (stage_.head) {
    GPT_CHECK(a.head_grad_ready, "Llama::backward() needs a forward_train() of the same activations first");
    a.head_grad_ready = false;
    // forward_train did the head: dnorm holds the final norm's output gradient and the
    // head's weight its gradient.
    zero_(a.dres);
    norm_->backward(a.dres, a.dnorm, out, a.norm_rstd);
    ready(blocks_end_, params_end_);  // lnf and the head (lm_head, or a tied head's wte copy)
  } else {
    GPT_CHECK(dout && dout->shape == out.shape, "Llama stage: backward needs d(output) shaped " + shape_str(out.shape));
    copy_(a.dres, *dout);
  }
  int64_t end = blocks_end_;
  for (size_t l = blocks_.size(); l-- > 0;) {
    if (split) {
      blocks_[l]->backward_input(a.blocks[l], a.dres, a.resid[l], scratch_);
      continue;  // the block's parameters are final after the weight pass
    }
    blocks_[l]->backward(a.blocks[l], a.dres, a.resid[l], scratch_);
    const int64_t begin = blocks_[l]->first_param_offset();
    ready(begin, end);
    end = begin;
  }
  a.weight_pass_due = split;
  if (stage_.embedding) {
    wte_->backward(nullptr, a.dres, a.tokens);
    ready(0, blocks_begin_);
  } else {
    a.input_grad = a.dres;
  }
}

}  // namespace gpt
