// BF16 on the CPU backend: tensors may be stored in bf16 (the mixed-precision path runs
// and is tested on machines without a GPU), but every kernel computes in fp32. F32Args
// widens bf16 arguments into fp32 temporaries and rounds written ones back when it goes
// out of scope: the same rounding a GPU kernel applies when it stores bf16. Arguments
// that are already fp32 pass through untouched, so the fp32 path costs nothing extra.
#pragma once
#include <deque>
#include <utility>

#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu {

class F32Args {
 public:
  F32Args() = default;
  F32Args(const F32Args&) = delete;
  F32Args& operator=(const F32Args&) = delete;
  ~F32Args() {
    for (auto& [dst, tmp] : write_back_) convert(*dst, tmp);
  }

  // An argument the op reads.
  const Tensor& in(const Tensor& t) {
    if (t.dtype != DType::BF16) return t;
    temps_.push_back(widen(t));
    return temps_.back();
  }
  const Tensor* in(const Tensor* t) { return t ? &in(*t) : nullptr; }

  // An argument the op writes; `accumulates` when it adds to what is there.
  Tensor& out(Tensor& t, bool accumulates) {
    if (t.dtype != DType::BF16) return t;
    temps_.push_back(accumulates ? widen(t) : empty(t.shape, DType::F32, t.device));
    write_back_.emplace_back(&t, temps_.back());
    return temps_.back();
  }
  Tensor* out(Tensor* t, bool accumulates) { return t ? &out(*t, accumulates) : nullptr; }

 private:
  static Tensor widen(const Tensor& t) {
    Tensor w = empty(t.shape, DType::F32, t.device);
    convert(w, t);
    return w;
  }
  std::deque<Tensor> temps_;  // deque: references handed out stay valid
  std::deque<std::pair<Tensor*, Tensor>> write_back_;
};

}  // namespace gpt::cpu
