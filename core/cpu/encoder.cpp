// Token + learned position embedding.
#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  check_f32(out, "encoder_forward", "out");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = wte.dim(1), V = wte.dim(0);
  GPT_CHECK(T <= wpe.dim(0), "encoder_forward: sequence length " + std::to_string(T) +
                                 " exceeds the position table (" + std::to_string(wpe.dim(0)) + ")");
  const int32_t* tok = tokens.i32();
  const float* te = wte.f32();
  const float* pe = wpe.f32();
  float* o = out.f32();
  // Checked before the parallel loop: an exception must not escape an OpenMP region.
  for (int64_t bt = 0; bt < B * T; ++bt)
    if (tok[bt] < 0 || tok[bt] >= V)
      fail("token id " + std::to_string(tok[bt]) + " at position " + std::to_string(bt) +
           " is outside the vocabulary [0, " + std::to_string(V) + ")");
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const float* a = te + size_t(tok[bt]) * C;
    const float* p = pe + size_t(bt % T) * C;
    float* y = o + size_t(bt) * C;
    for (int64_t c = 0; c < C; ++c) y[c] = a[c] + p[c];
  }
}

void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = dwte.dim(1);
  const int32_t* tok = tokens.i32();
  const float* d = dout.f32();
  float* dte = dwte.f32();
  float* dpe = dwpe.f32();
  // Parallel over channels, sequential over (b, t): every element is summed in the same
  // order on every run, so the result is deterministic with no atomics.
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    for (int64_t bt = 0; bt < B * T; ++bt) {
      const float* g = d + size_t(bt) * C;
      float* te = dte + size_t(tok[bt]) * C;
      float* pe = dpe + size_t(bt % T) * C;
      for (int64_t c = c0; c < c1; ++c) {
        te[c] += g[c];
        pe[c] += g[c];
      }
    }
  }
}

}  // namespace gpt::cpu
