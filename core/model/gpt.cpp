#include "core/model/gpt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

GPT::GPT(const GPTConfig& cfg, ParamStore& store, Recompute recompute, StageSpec stage,
         const LinearFactory* linears)
    : cfg_(cfg), stage_(stage), store_(store), linears_(linears), shared_acts_(std::make_shared<BlockActs>()) {
  cfg_.validate();
  if (stage_.layer_end < 0) stage_.layer_end = cfg.n_layer;
  const std::string range = "[" + std::to_string(stage_.layer_begin) + ", " + std::to_string(stage_.layer_end) + ")";
  GPT_CHECK(stage_.layer_begin >= 0 && stage_.layer_begin <= stage_.layer_end && stage_.layer_end <= cfg.n_layer,
            "GPT stage: layer range " + range + " is not within the model's " + std::to_string(cfg.n_layer) + " layers");
  GPT_CHECK(stage_.embedding || stage_.head || stage_.layer_begin < stage_.layer_end,
            "GPT stage: layer range " + range + " without embedding or head is empty");
  const int64_t C = cfg.n_embd;
  // Embeddings get no weight decay (GPT-2 practice). Every stage draws its parameters
  // from their global names, so a stage's wte equals the whole model's.
  const LinearFactory whole;
  const LinearFactory& layers = linears ? *linears : whole;
  if (stage_.embedding) {
    wte_ = layers.make_token_embedding(store, cfg.vocab_size, C);
    wpe = store.add("wpe", {cfg.block_size, C}, /*decay=*/false, 0.01f);
  }
  blocks_begin_ = store.total();
  for (int l = stage_.layer_begin; l < stage_.layer_end; ++l)
    blocks_.push_back(std::make_unique<Block>(store, "blocks." + std::to_string(l), cfg, recompute,
                                              shared_acts_, layers));
  blocks_end_ = store.total();
  if (stage_.head) {
    lnf_ = std::make_unique<LayerNorm>(store, "lnf", C);
    layers.add_norm_params(lnf_->weight, lnf_->bias);
    // The head is tied to the token embedding. A head stage without the embedding holds
    // its own copy (same global name and values); a pipeline sums the two copies'
    // gradients across the first and last stage.
    if (!wte_) wte_ = layers.make_token_embedding(store, cfg.vocab_size, C);
  }
}

std::unique_ptr<Activations> GPT::make_activations() const {
  auto a = std::make_unique<GPTActivations>();
  a->blocks.resize(blocks_.size());
  return a;
}

GPTActivations& GPT::cast(Activations& acts) {
  auto* a = dynamic_cast<GPTActivations*>(&acts);
  GPT_CHECK(a, "GPT: activations made by another model family");
  return *a;
}

void GPT::forward_trunk(GPTActivations& a, const Tensor& input) {
  // A handed-over sequence shard [rows, C] does not carry B and T (set_micro_batch does).
  const bool shard_input = !stage_.embedding && input.ndim() == 2;
  GPT_CHECK(!shard_input || micro_B_ > 0, "GPT stage: a sequence-sharded input needs set_micro_batch() first");
  const int64_t B = shard_input ? micro_B_ : input.dim(0), T = shard_input ? micro_T_ : input.dim(1);
  const int64_t C = cfg_.n_embd, N = B * T;
  GPT_CHECK(T <= cfg_.block_size, "sequence length " + std::to_string(T) +
                                      " exceeds model.block_size " +
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
    GPT_CHECK(input.dtype == DType::I32 && input.ndim() == 2, "GPT: the embedding stage takes I32 tokens [B, T]");
    a.tokens = input;
    wte_->forward(a.resid[0], input, &wpe->compute);
  } else {
    GPT_CHECK(input.shape == a.resid[0].shape && input.dtype == act,
              "GPT stage: input must be the previous stage's output " + shape_str(a.resid[0].shape) +
                  ", got " + shape_str(input.shape));
    // A copy: the block's backward needs its input, and the sender may reuse its buffer.
    copy_(a.resid[0], input);
  }
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(a.blocks[l], a.resid[l + 1], a.resid[l], B, T);
  if (stage_.head) {
    ensure(a.lnf_out, held, act, dev);
    lnf_->forward(a.lnf_out, a.lnf_stats, a.resid.back());
  } else {
    a.output = a.resid.back();
  }
}

float GPT::head_loss(GPTActivations& a, const Tensor& targets, const float* dloss) {
  if (dloss) ensure(a.dlnf, a.lnf_out.shape, a.lnf_out.dtype, store_.device());
  return head_loss_.run(*wte_, a.lnf_out, targets, dloss, dloss ? &a.dlnf : nullptr);
}

float GPT::forward(Activations& acts, const Tensor& input, const Tensor* targets) {
  GPTActivations& a = cast(acts);
  forward_trunk(a, input);
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  if (targets) return head_loss(a, *targets, nullptr);
  ensure(a.output, {a.B, a.T, wte_->logit_columns()}, a.lnf_out.dtype, store_.device());
  wte_->head_logits(a.output, wte_->head_input(a.lnf_out, a.B * a.T));
  return std::numeric_limits<float>::quiet_NaN();
}

std::vector<float> GPT::vocabulary_logits(const Activations& acts, int64_t position) const {
  GPT_CHECK(stage_.head, "GPT::vocabulary_logits: this stage has no head");
  const Tensor& out = acts.output;
  const int64_t Vs = wte_->logit_columns();
  GPT_CHECK(out.defined() && out.dim(-1) == Vs && position >= 0 && position * Vs < out.numel(),
            "GPT::vocabulary_logits: no logits at position " + std::to_string(position) +
                " (run forward() without targets first)");
  return wte_->vocabulary_row(out.slice(position * Vs, {Vs}));
}

float GPT::forward_train(Activations& acts, const Tensor& input, const Tensor* targets, float dloss) {
  GPTActivations& a = cast(acts);
  forward_trunk(a, input);
  if (!stage_.head) return std::numeric_limits<float>::quiet_NaN();
  GPT_CHECK(targets, "GPT: the head stage's forward_train needs targets");
  const float loss = head_loss(a, *targets, &dloss);
  a.head_grad_ready = true;
  return loss;
}

void GPT::backward(Activations& acts, const Tensor* dout) { run_backward(cast(acts), dout, false); }

void GPT::backward_input(Activations& acts, const Tensor* dout) { run_backward(cast(acts), dout, true); }

// The blocks' weight gradients, last block first; each block's parameters are final
// once its weight pass is done (its LayerNorms' gradients came in the input pass).
void GPT::backward_weight(Activations& acts) {
  GPTActivations& a = cast(acts);
  GPT_CHECK(a.weight_pass_due, "GPT::backward_weight() needs a backward_input() of the same activations first");
  a.weight_pass_due = false;
  int64_t end = blocks_end_;
  for (size_t l = blocks_.size(); l-- > 0;) {
    blocks_[l]->backward_weights(a.blocks[l]);
    const int64_t begin = blocks_[l]->ln1.weight->offset;
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
    end = begin;
  }
}

void GPT::run_backward(GPTActivations& a, const Tensor* dout, bool split) {
  auto ready = [&](int64_t begin, int64_t end) {
    if (on_grads_ready && begin < end) on_grads_ready(begin, end);
  };
  const Tensor& out = a.resid.back();
  ensure(a.dres, out.shape, out.dtype, store_.device());
  if (stage_.head) {
    GPT_CHECK(a.head_grad_ready, "GPT::backward() needs a forward_train() of the same activations first");
    a.head_grad_ready = false;
    // The head's part was done by forward_train: dlnf holds the final LayerNorm's output
    // gradient and wte->grad the head's share of the tied embedding's gradient.
    zero_(a.dres);
    lnf_->backward(a.dres, a.dlnf, out, a.lnf_stats);
    ready(blocks_end_, store_.total());  // lnf, and a head stage's own wte copy
  } else {
    GPT_CHECK(dout && dout->shape == out.shape, "GPT stage: backward needs d(output) shaped " + shape_str(out.shape));
    copy_(a.dres, *dout);
  }
  int64_t end = blocks_end_;
  for (size_t l = blocks_.size(); l-- > 0;) {
    if (split) {
      blocks_[l]->backward_input(a.blocks[l], a.dres, a.resid[l], scratch_);
      continue;  // the block's parameters are final after the weight pass
    }
    blocks_[l]->backward(a.blocks[l], a.dres, a.resid[l], scratch_);
    const int64_t begin = blocks_[l]->ln1.weight->offset;
    ready(begin, end);
    end = begin;
  }
  a.weight_pass_due = split;
  if (stage_.embedding) {
    wte_->backward(&wpe->grad, a.dres, a.tokens);
    ready(0, blocks_begin_);
  } else {
    a.input_grad = a.dres;
  }
}

}  // namespace gpt
