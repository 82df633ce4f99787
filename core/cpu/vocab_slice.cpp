// Vocabulary slices: the embedding lookup and the softmax cross-entropy of one rank's
// rows [vocab_begin, vocab_begin + Vs) of wte (core/ops.h). Ids at or past V are padding.
// Compiled with -ffast-math like cross_entropy.cpp (the exp loops vectorise), so
// "no real id" is a flag here, never an infinity compared after the fact.
#include <cmath>
#include <limits>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {

// The real (non-padding) columns of a slice of Vs columns starting at id vocab_begin.
int64_t real_columns(int64_t vocab_begin, int64_t Vs, int64_t V) {
  return std::max<int64_t>(0, std::min(Vs, V - vocab_begin));
}

void check_ids(const Tensor& ids, int64_t V, const char* what, bool negative_ok) {
  const int32_t* t = ids.i32();
  for (int64_t n = 0; n < ids.numel(); ++n)
    if (t[n] >= V || (t[n] < 0 && !negative_ok))
      fail(std::string(what) + " id " + std::to_string(t[n]) + " at position " + std::to_string(n) +
           " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

}  // namespace

void encoder_slice_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                           int64_t vocab_begin, int64_t V) {
  check_f32(out, "encoder_slice_forward", "out");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), Vs = wte.dim(0), C = wte.dim(1);
  GPT_CHECK(!wpe || T <= wpe->dim(0), "encoder_slice_forward: sequence length " + std::to_string(T) +
                                          " exceeds the position table");
  // Checked before the parallel loop: an exception must not escape an OpenMP region.
  check_ids(tokens, V, "token", false);
  const int32_t* tok = tokens.i32();
  const float* te = wte.f32();
  const float* pe = wpe ? wpe->f32() : nullptr;
  float* o = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const int64_t row = int64_t(tok[bt]) - vocab_begin;
    const float* a = row >= 0 && row < Vs ? te + size_t(row) * C : nullptr;
    const float* p = pe ? pe + size_t(bt % T) * C : nullptr;
    float* y = o + size_t(bt) * C;
    for (int64_t c = 0; c < C; ++c) y[c] = (a ? a[c] : 0.f) + (p ? p[c] : 0.f);
  }
}

void encoder_slice_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens,
                            int64_t vocab_begin) {
  const int64_t B = tokens.dim(0), T = tokens.dim(1), Vs = dwte.dim(0), C = dwte.dim(1);
  const int32_t* tok = tokens.i32();
  const float* d = dout.f32();
  float* dte = dwte.f32();
  float* dpe = dwpe.defined() ? dwpe.f32() : nullptr;  // undefined: no positions
  // As encoder_backward: parallel over channels, sequential over (b, t), deterministic.
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const int64_t c1 = c0 + 16 < C ? c0 + 16 : C;
    for (int64_t bt = 0; bt < B * T; ++bt) {
      const float* g = d + size_t(bt) * C;
      const int64_t row = int64_t(tok[bt]) - vocab_begin;
      if (dpe) {
        float* pe = dpe + size_t(bt % T) * C;
        for (int64_t c = c0; c < c1; ++c) pe[c] += g[c];
      }
      if (row < 0 || row >= Vs) continue;
      float* te = dte + size_t(row) * C;
      for (int64_t c = c0; c < c1; ++c) te[c] += g[c];
    }
  }
}

void cross_entropy_slice_stats(Tensor& stats, const Tensor& logits, const Tensor& targets,
                               int64_t vocab_begin, int64_t V) {
  check_f32(logits, "cross_entropy_slice_stats", "logits");
  const int64_t Vs = logits.dim(-1), N = logits.numel() / Vs, real = real_columns(vocab_begin, Vs, V);
  GPT_CHECK(stats.dtype == DType::F32 && stats.numel() == 3 * N,
            "cross_entropy_slice_stats: stats must be F32 [3, " + std::to_string(N) + "]");
  check_ids(targets, V, "target token", true);
  const float* z = logits.f32();
  const int32_t* t = targets.i32();
  float* mx = stats.f32();
  float* se = mx + N;
  float* tl = mx + 2 * N;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* zr = z + size_t(n) * Vs;
    const int64_t j = int64_t(t[n]) - vocab_begin;
    tl[n] = t[n] >= 0 && j >= 0 && j < real ? zr[j] : 0.f;
    if (real == 0) {  // a slice of padding only: nothing to add to the softmax
      mx[n] = -std::numeric_limits<float>::infinity();
      se[n] = 0.f;
      continue;
    }
    float m = zr[0];
    for (int64_t v = 1; v < real; ++v) m = zr[v] > m ? zr[v] : m;
    float buf[512];  // exp into a buffer, then sum (see cross_entropy.cpp)
    float sum = 0.f;
    for (int64_t v0 = 0; v0 < real; v0 += 512) {
      const int64_t k = real - v0 < 512 ? real - v0 : 512;
#pragma omp simd
      for (int64_t i = 0; i < k; ++i) buf[i] = std::exp(zr[v0 + i] - m);
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < k; ++i) sum += buf[i];
    }
    mx[n] = m;
    se[n] = sum;
  }
}

void cross_entropy_slice_forward_backward(Tensor& losses, Tensor* logits, const Tensor& targets,
                                          const Tensor& stats, int64_t vocab_begin, int64_t V,
                                          float dloss) {
  const int64_t N = targets.numel();
  GPT_CHECK(stats.dtype == DType::F32 && stats.numel() % (3 * N) == 0 && stats.numel() > 0,
            "cross_entropy_slice_forward_backward: stats must be F32 [S, 3, " + std::to_string(N) + "]");
  const int64_t S = stats.numel() / (3 * N);
  const int64_t Vs = logits ? logits->dim(-1) : 0, real = real_columns(vocab_begin, Vs, V);
  if (logits) {
    check_f32(*logits, "cross_entropy_slice_forward_backward", "logits");
    GPT_CHECK(logits->numel() == N * Vs, "cross_entropy_slice_forward_backward: logits are not [N, Vs]");
  }
  check_ids(targets, V, "target token", true);
  const float* st = stats.f32();
  const int32_t* t = targets.i32();
  float* l = losses.f32();
  float* z = logits ? logits->f32() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* zr = z ? z + size_t(n) * Vs : nullptr;
    if (t[n] < 0) {
      l[n] = 0.f;
      if (zr)
        for (int64_t v = 0; v < Vs; ++v) zr[v] = 0.f;
      continue;
    }
    // Slices with real ids have a finite max; a padding-only slice has sum 0 and is skipped
    // by that, not by comparing its -inf (which -ffast-math may not honour).
    float M = 0.f;
    bool any = false;
    for (int64_t s = 0; s < S; ++s) {
      const float* r = st + size_t(s) * 3 * N;
      if (r[N + n] > 0.f && (!any || r[n] > M)) M = r[n], any = true;
    }
    float Z = 0.f, target = 0.f;
    for (int64_t s = 0; s < S; ++s) {
      const float* r = st + size_t(s) * 3 * N;
      if (r[N + n] > 0.f) Z += r[N + n] * std::exp(r[n] - M);
      target += r[2 * N + n];
    }
    const float lse = M + std::log(Z);
    l[n] = lse - target;
    if (!zr) continue;
#pragma omp simd
    for (int64_t v = 0; v < real; ++v) zr[v] = dloss * std::exp(zr[v] - lse);
    for (int64_t v = real; v < Vs; ++v) zr[v] = 0.f;
    const int64_t j = int64_t(t[n]) - vocab_begin;
    if (j >= 0 && j < real) zr[j] -= dloss;
  }
}

}  // namespace gpt::cpu
