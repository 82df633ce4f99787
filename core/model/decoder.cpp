#include "core/model/decoder.h"

#include <limits>
#include <string>

#include "core/error.h"
#include "core/model/gpt.h"
#include "core/model/llama.h"
#include "core/ops.h"

namespace gpt {

template <class Parts>
Decoder<Parts>::Decoder(const GPTConfig& cfg, ParamStore& store, Recompute recompute, StageSpec stage,
                        const LinearFactory* linears)
    : cfg_(cfg),
      stage_(stage),
      store_(store),
      linears_(linears),
      shared_acts_(std::make_shared<typename Parts::BlockActs>()) {
  cfg_.validate();
  const std::string family = family_name(Parts::kFamily);
  GPT_CHECK(cfg_.family == Parts::kFamily,
            family + " model built from a model.family = " + family_name(cfg_.family) + " configuration");
  if (stage_.layer_end < 0) stage_.layer_end = cfg.n_layer;
  const std::string range = "[" + std::to_string(stage_.layer_begin) + ", " + std::to_string(stage_.layer_end) + ")";
  GPT_CHECK(stage_.layer_begin >= 0 && stage_.layer_begin <= stage_.layer_end && stage_.layer_end <= cfg.n_layer,
            family + " stage: layer range " + range + " is not within the model's " + std::to_string(cfg.n_layer) +
                " layers");
  GPT_CHECK(stage_.embedding || stage_.head || stage_.layer_begin < stage_.layer_end,
            family + " stage: layer range " + range + " without embedding or head is empty");
  const int64_t C = cfg.n_embd, V = cfg.vocab_size;
  // Every stage draws its parameters from their global names, so a stage's wte equals
  // the whole model's. Embeddings get no weight decay (GPT-2 practice).
  const LinearFactory whole;
  const LinearFactory& layers = linears ? *linears : whole;
  if (stage_.embedding) {
    wte_ = layers.make_token_embedding(store, V, C, "wte");
    if (Parts::kLearnedPositions) wpe_ = store.add("wpe", {cfg.block_size, C}, /*decay=*/false, 0.01f);
  }
  blocks_begin_ = store.total();
  for (int l = stage_.layer_begin; l < stage_.layer_end; ++l) {
    const int64_t experts_begin = store.expert_total();
    blocks_.push_back(std::make_unique<typename Parts::Block>(store, "blocks." + std::to_string(l), cfg_, recompute,
                                                              shared_acts_, layers, l));
    block_experts_.emplace_back(experts_begin, store.expert_total());
  }
  blocks_end_ = store.total();
  if (stage_.head) {
    norm_ = Parts::make_norm(store, cfg_, layers);
    if (!cfg_.tie_embeddings) {
      lm_head_ = layers.make_token_embedding(store, V, C, "lm_head");
      head_ = lm_head_.get();
    } else {
      if (!wte_) wte_ = layers.make_token_embedding(store, V, C, "wte");
      head_ = wte_.get();
    }
  }
  params_end_ = store.total();
}

template <class Parts>
std::unique_ptr<Activations> Decoder<Parts>::make_activations() const {
  auto a = std::make_unique<Acts>();
  a->blocks.resize(blocks_.size());
  return a;
}

template <class Parts>
typename Decoder<Parts>::Acts& Decoder<Parts>::cast(Activations& acts) {
  auto* a = dynamic_cast<Acts*>(&acts);
  GPT_CHECK(a, std::string(family_name(Parts::kFamily)) + ": activations made by another model family");
  return *a;
}

template <class Parts>
void Decoder<Parts>::forward_trunk(Acts& a, const Tensor& input) {
  const std::string family = family_name(Parts::kFamily);
  // A handed-over sequence shard [rows, C] does not carry B and T (set_micro_batch does).
  const bool shard_input = !stage_.embedding && input.ndim() == 2;
  GPT_CHECK(!shard_input || micro_B_ > 0, family + " stage: a sequence-sharded input needs set_micro_batch() first");
  const int64_t B = shard_input ? micro_B_ : input.dim(0), T = shard_input ? micro_T_ : input.dim(1);
  const int64_t C = cfg_.n_embd, N = B * T;
  // Learned positions end at block_size; RoPE has no table to run out of, and
  // block_size is the context that model is meant for.
  GPT_CHECK(T <= cfg_.block_size, "sequence length " + std::to_string(T) + " exceeds model.block_size " +
                                      std::to_string(cfg_.block_size));
  const Device dev = store_.device();
  const DType act = store_.compute_dtype();  // activations follow the compute copies
  // The rows of the residual stream this model holds: all, or its sequence shard.
  const int64_t rows = linears_ ? linears_->sequence_rows(N) : N;
  const Shape held = rows == N ? Shape{B, T, C} : Shape{rows, C};
  a.head_grad_ready = false;
  a.B = B, a.T = T;
  a.resid.resize(blocks_.size() + 1);
  for (auto& r : a.resid) ensure(r, held, act, dev);
  if (stage_.embedding) {
    GPT_CHECK(input.dtype == DType::I32 && input.ndim() == 2, family + ": the embedding stage takes I32 tokens [B, T]");
    a.tokens = input;
    wte_->forward(a.resid[0], input, wpe_ ? &wpe_->compute : nullptr);
  } else {
    GPT_CHECK(input.shape == a.resid[0].shape && input.dtype == act,
              family + " stage: input must be the previous stage's output " + shape_str(a.resid[0].shape) +
                  ", got " + shape_str(input.shape));
    // A copy: the block's backward needs its input, and the sender may reuse its buffer.
    copy_(a.resid[0], input);
  }
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(a.blocks[l], a.resid[l + 1], a.resid[l], B, T);
  if (stage_.head) {
    ensure(a.norm_out, held, act, dev);
    norm_->forward(a.norm_out, a.norm_stats, a.resid.back());
  } else {
    a.output = a.resid.back();
  }
}

template <class Parts>
float Decoder<Parts>::forward(Activations& acts, const Tensor& input, const Tensor* targets) {
  Acts& a = cast(acts);
  forward_trunk(a, input);
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  if (targets) return head_loss_.run(*head_, a.norm_out, *targets, nullptr, nullptr);
  ensure(a.output, {a.B, a.T, head_->logit_columns()}, a.norm_out.dtype, store_.device());
  head_->head_logits(a.output, head_->head_input(a.norm_out, a.B * a.T));
  return std::numeric_limits<float>::quiet_NaN();
}

template <class Parts>
std::vector<float> Decoder<Parts>::vocabulary_logits(const Activations& acts, int64_t position) const {
  const std::string family = family_name(Parts::kFamily);
  GPT_CHECK(stage_.head, family + "::vocabulary_logits: this stage has no head");
  const Tensor& out = acts.output;
  const int64_t Vs = head_->logit_columns();
  GPT_CHECK(out.defined() && out.dim(-1) == Vs && position >= 0 && position * Vs < out.numel(),
            family + "::vocabulary_logits: no logits at position " + std::to_string(position) +
                " (run forward() without targets first)");
  return head_->vocabulary_row(out.slice(position * Vs, {Vs}));
}

template <class Parts>
float Decoder<Parts>::forward_train(Activations& acts, const Tensor& input, const Tensor* targets, float dloss) {
  Acts& a = cast(acts);
  forward_trunk(a, input);
  // The auxiliary losses enter the step's loss as the cross-entropy does: a micro-batch's
  // mean times dloss x its positions (1 / grad_accum for the mean over a step).
  const float aux_grad_scale = dloss * float(a.B * a.T);
  for (size_t l = 0; l < blocks_.size(); ++l)
    Parts::after_train_forward(*blocks_[l], a.blocks[l], stage_.layer_begin + int(l), aux_grad_scale, moe_step_);
  ++moe_step_.micro_batches;
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  GPT_CHECK(targets, std::string(family_name(Parts::kFamily)) + ": the head stage's forward_train needs targets");
  ensure(a.dnorm, a.norm_out.shape, a.norm_out.dtype, store_.device());
  const float loss = head_loss_.run(*head_, a.norm_out, *targets, &dloss, &a.dnorm);
  a.head_grad_ready = true;
  return loss;
}

template <class Parts>
void Decoder<Parts>::backward(Activations& acts, const Tensor* dout) {
  run_backward(cast(acts), dout, false);
}

template <class Parts>
void Decoder<Parts>::backward_input(Activations& acts, const Tensor* dout) {
  run_backward(cast(acts), dout, true);
}

// The blocks' weight gradients, last block first; each block's parameters are final
// once its weight pass is done (its norms' gradients came in the input pass).
template <class Parts>
void Decoder<Parts>::backward_weight(Activations& acts) {
  Acts& a = cast(acts);
  GPT_CHECK(a.weight_pass_due, std::string(family_name(Parts::kFamily)) +
                                   "::backward_weight() needs a backward_input() of the same activations first");
  a.weight_pass_due = false;
  int64_t end = blocks_end_;
  for (size_t l = blocks_.size(); l-- > 0;) {
    blocks_[l]->backward_weights(a.blocks[l]);
    const int64_t begin = blocks_[l]->first_param_offset();
    report_block(l, begin, end);
    end = begin;
  }
}

template <class Parts>
void Decoder<Parts>::report_block(size_t l, int64_t begin, int64_t end) {
  if (!on_grads_ready) return;
  if (begin < end) on_grads_ready(begin, end);
  const auto [eb, ee] = block_experts_[l];
  if (eb < ee) on_grads_ready(store_.expert_begin() + eb, store_.expert_begin() + ee);
}

template <class Parts>
void Decoder<Parts>::run_backward(Acts& a, const Tensor* dout, bool split) {
  const std::string family = family_name(Parts::kFamily);
  auto ready = [&](int64_t begin, int64_t end) {
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
  };
  const Tensor& out = a.resid.back();
  ensure(a.dres, out.shape, out.dtype, store_.device());
  if (stage_.head) {
    GPT_CHECK(a.head_grad_ready, family + "::backward() needs a forward_train() of the same activations first");
    a.head_grad_ready = false;
    // forward_train did the head: dnorm holds the final norm's output gradient and the
    // head's weight its gradient.
    zero_(a.dres);
    norm_->backward(a.dres, a.dnorm, out, a.norm_stats);
    ready(blocks_end_, params_end_);  // lnf and the head (lm_head, or a tied head's wte copy)
  } else {
    GPT_CHECK(dout && dout->shape == out.shape,
              family + " stage: backward needs d(output) shaped " + shape_str(out.shape));
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
    report_block(l, begin, end);
    end = begin;
  }
  a.weight_pass_due = split;
  if (stage_.embedding) {
    wte_->backward(wpe_ ? &wpe_->grad : nullptr, a.dres, a.tokens);
    ready(0, blocks_begin_);
  } else {
    a.input_grad = a.dres;
  }
}

template class Decoder<Gpt2Parts>;
template class Decoder<LlamaParts>;

}  // namespace gpt
