// AdamW over a contiguous element range of a ParamStore's flat buffers. The whole
// model by default; ZeRO-1 gives each data-parallel rank its own shard [begin, end),
// so the moments held per rank shrink with the DP size.
#pragma once
#include <cstdint>

#include "core/param_store.h"

namespace gpt {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // applied only to parameters registered with decay=true
};

class AdamW {
 public:
  AdamW(ParamStore& store, AdamWConfig cfg, int64_t begin = 0, int64_t end = -1);
  // One update of [begin, end) from the store's gradients.
  void step(float lr);

  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t t() const { return t_; }
  void set_t(int64_t t) { t_ = t; }
  Tensor& m() { return m_; }
  Tensor& v() { return v_; }
  size_t state_bytes() const { return m_.nbytes() + v_.nbytes(); }

 private:
  ParamStore& store_;
  AdamWConfig cfg_;
  int64_t begin_, end_, t_ = 0;
  Tensor m_, v_;  // [end - begin], F32, on the store's device
};

// Warmup (linear from lr/warmup) then cosine decay to min_lr at total_steps.
float lr_at(int64_t step, int64_t warmup, int64_t total_steps, float max_lr, float min_lr);

}  // namespace gpt

namespace gpt {
// Global grad-norm clipping as torch.nn.utils.clip_grad_norm_ does it: given the sum of
// squares of ALL gradients (summed across ranks by the caller when they are sharded),
// scales `grads` by max_norm / (norm + 1e-6) when that is below 1. Returns the norm.
float clip_grad_norm(Tensor& grads, double sum_squares, float max_norm);
}  // namespace gpt
