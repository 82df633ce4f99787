// Causal multi-head self-attention, one (batch, head) pair per OpenMP task, each with
// its own T x T scratch. Only the softmax log-sum-exp per row is saved for backward
// (flash-attention style): the probabilities are rebuilt from Q K^T there.
#include <cblas.h>

#include <cmath>
#include <vector>

#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu {

namespace {
struct Dims {
  int64_t B, T, C, NH, HS;
};
Dims dims_of(const Tensor& qkv, int NH) {
  Dims d{qkv.dim(0), qkv.dim(1), qkv.dim(2) / 3, NH, 0};
  d.HS = d.C / NH;
  return d;
}
// S = scale * Q K^T for rows of one head; Q and K rows are 3C apart in qkv.
void scores(float* S, const float* q, const float* k, const Dims& d, float scale) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(d.T), int(d.T), int(d.HS), scale, q,
              int(3 * d.C), k, int(3 * d.C), 0.f, S, int(d.T));
}
}  // namespace

void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH) {
  check_f32(qkv, "attention_forward", "qkv");
  const Dims d = dims_of(qkv, NH);
  const float scale = 1.f / std::sqrt(float(d.HS));
  const float* base = qkv.f32();
  float* o = out.f32();
  float* L = lse.f32();
#pragma omp parallel
  {
    std::vector<float> S(size_t(d.T * d.T));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < d.B * d.NH; ++bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      const float* q = base + size_t(b) * d.T * 3 * d.C + h * d.HS;
      scores(S.data(), q, q + d.C, d, scale);
      for (int64_t i = 0; i < d.T; ++i) {
        float* s = S.data() + i * d.T;
        float mx = s[0];
        for (int64_t j = 1; j <= i; ++j) mx = s[j] > mx ? s[j] : mx;
        float sum = 0.f;
        for (int64_t j = 0; j <= i; ++j) {
          s[j] = std::exp(s[j] - mx);
          sum += s[j];
        }
        const float inv = 1.f / sum;
        for (int64_t j = 0; j <= i; ++j) s[j] *= inv;
        for (int64_t j = i + 1; j < d.T; ++j) s[j] = 0.f;
        L[(b * d.NH + h) * d.T + i] = mx + std::log(sum);
      }
      // O[T,HS] = P[T,T] @ V[T,HS]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(d.T), int(d.HS), int(d.T), 1.f,
                  S.data(), int(d.T), q + 2 * d.C, int(3 * d.C), 0.f,
                  o + size_t(b) * d.T * d.C + h * d.HS, int(d.C));
    }
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH) {
  const Dims d = dims_of(qkv, NH);
  const float scale = 1.f / std::sqrt(float(d.HS));
  const float* base = qkv.f32();
  const float* dO_base = dout.f32();
  const float* O_base = out.f32();
  const float* L = lse.f32();
  float* dbase = dqkv.f32();
#pragma omp parallel
  {
    std::vector<float> P(size_t(d.T * d.T)), dP(size_t(d.T * d.T));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < d.B * d.NH; ++bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      const size_t qoff = size_t(b) * d.T * 3 * d.C + h * d.HS;
      const size_t ooff = size_t(b) * d.T * d.C + h * d.HS;
      const float* q = base + qoff;
      const float* k = q + d.C;
      const float* v = q + 2 * d.C;
      const float* dO = dO_base + ooff;
      const float* O = O_base + ooff;
      float* dq = dbase + qoff;
      float* dk = dq + d.C;
      float* dv = dq + 2 * d.C;
      const float* l = L + (b * d.NH + h) * d.T;
      scores(P.data(), q, k, d, scale);
      for (int64_t i = 0; i < d.T; ++i) {
        float* p = P.data() + i * d.T;
        for (int64_t j = 0; j <= i; ++j) p[j] = std::exp(p[j] - l[i]);
        for (int64_t j = i + 1; j < d.T; ++j) p[j] = 0.f;
      }
      const int T = int(d.T), HS = int(d.HS), C3 = int(3 * d.C), C = int(d.C);
      // dV = P^T dO
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, dO, C, 0.f,
                  dv, C3);
      // dP = dO V^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.f, dO, C, v, C3, 0.f,
                  dP.data(), T);
      // dS = P * (dP - rowsum(dO * O)), with the softmax scale folded in.
      for (int64_t i = 0; i < d.T; ++i) {
        float D = 0.f;
        for (int64_t c = 0; c < d.HS; ++c) D += dO[i * d.C + c] * O[i * d.C + c];
        float* p = P.data() + i * d.T;
        const float* dp = dP.data() + i * d.T;
        for (int64_t j = 0; j <= i; ++j) p[j] = p[j] * (dp[j] - D) * scale;
      }
      // dQ = dS K ; dK = dS^T Q
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, k, C3,
                  0.f, dq, C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, q, C3, 0.f,
                  dk, C3);
    }
  }
}

}  // namespace gpt::cpu
