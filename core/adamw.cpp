#include "core/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

AdamW::AdamW(ParamStore& store, AdamWConfig cfg, int64_t begin, int64_t end)
    : store_(store), cfg_(cfg), begin_(begin), end_(end < 0 ? store.total() : end) {
  GPT_CHECK(0 <= begin_ && begin_ <= end_ && end_ <= store.total(),
            "AdamW range [" + std::to_string(begin_) + ", " + std::to_string(end_) +
                ") outside the " + std::to_string(store.total()) + " parameters");
  m_ = zeros({end_ - begin_}, DType::F32, store.device());
  v_ = zeros({end_ - begin_}, DType::F32, store.device());
}

void AdamW::step(float lr) {
  ++t_;
  const Ops& ops = ops_for(store_.device());
  Tensor& values = store_.flat_values();
  Tensor& grads = store_.flat_grads();
  for (int i = 0; i < store_.size(); ++i) {
    const Param& p = store_.at(i);
    int64_t lo = std::max(begin_, p.offset), hi = std::min(end_, p.offset + p.numel());
    if (lo >= hi) continue;
    Tensor val = values.slice(lo, {hi - lo});
    Tensor grad = grads.slice(lo, {hi - lo});
    Tensor m = m_.slice(lo - begin_, {hi - lo});
    Tensor v = v_.slice(lo - begin_, {hi - lo});
    AdamWArgs args{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, p.decay ? cfg_.weight_decay : 0.f, t_};
    ops.adamw_update(val, grad, m, v, args);
  }
}

float lr_at(int64_t step, int64_t warmup, int64_t total_steps, float max_lr, float min_lr) {
  if (step < warmup) return max_lr * float(step + 1) / float(warmup);
  if (step >= total_steps) return min_lr;
  double progress = double(step - warmup) / double(std::max<int64_t>(1, total_steps - warmup));
  return min_lr + float(0.5 * (1.0 + std::cos(M_PI * progress))) * (max_lr - min_lr);
}

}  // namespace gpt

namespace gpt {
float clip_grad_norm(Tensor& grads, double sum_squares, float max_norm) {
  float norm = float(std::sqrt(sum_squares));
  if (max_norm > 0.f && std::isfinite(norm)) {
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.f) ops_for(grads.device).scale(grads, coef);
  }
  return norm;
}
}  // namespace gpt
