// Causal self-attention with grouped-query heads (multi-head when NKV = NH), one
// (batch, head) pair per OpenMP task in the forward, each with its own T x T scratch.
// Only the softmax log-sum-exp per row is saved for backward (flash-attention style):
// the probabilities are rebuilt from Q K^T there.
//
// qkv rows are [q heads (NH) | k heads (NKV) | v heads (NKV)], HS each; query head h
// reads kv head h / (NH / NKV) by index: K and V are never repeated in memory. The
// backward runs one task per (batch, kv head) and loops over the query heads of its
// group, so the group's dK and dV sums stay in one task, in order (deterministic, no
// atomics); for multi-head that is one query head per task, as before GQA, but
// multi-query (NKV = 1) has only B tasks there.
#include <cblas.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {
struct Dims {
  int64_t B, T, NH, NKV, HS;
  int64_t W;   // qkv row: (NH + 2 NKV) HS
  int64_t QC;  // out row: NH HS
  int64_t group() const { return NH / NKV; }
  int64_t k_col(int64_t kvh) const { return (NH + kvh) * HS; }
  int64_t v_col(int64_t kvh) const { return (NH + NKV + kvh) * HS; }
};
Dims dims_of(const Tensor& qkv, int NH, int NKV, const char* op) {
  const int64_t heads = int64_t(NH) + 2 * int64_t(NKV);
  GPT_CHECK(qkv.ndim() == 3 && NH > 0 && NKV > 0 && NH % NKV == 0 && qkv.dim(2) % heads == 0,
            std::string(op) + ": qkv " + shape_str(qkv.shape) +
                " is not [B, T, (NH + 2 NKV) HS] with NKV dividing NH, for NH " +
                std::to_string(NH) + ", NKV " + std::to_string(NKV));
  Dims d{qkv.dim(0), qkv.dim(1), NH, NKV, qkv.dim(2) / heads, qkv.dim(2), 0};
  d.QC = d.NH * d.HS;
  return d;
}
// S = scale * Q K^T for rows of one head; Q and K rows are W apart in qkv.
void scores(float* S, const float* q, const float* k, const Dims& d, float scale) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(d.T), int(d.T), int(d.HS), scale, q,
              int(d.W), k, int(d.W), 0.f, S, int(d.T));
}
}  // namespace

void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV) {
  check_f32(qkv, "attention_forward", "qkv");
  const Dims d = dims_of(qkv, NH, NKV, "attention_forward");
  const float scale = 1.f / std::sqrt(float(d.HS));
  const float* base = qkv.f32();
  float* o = out.f32();
  float* L = lse.f32();
#pragma omp parallel
  {
    std::vector<float> S(size_t(d.T * d.T));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < d.B * d.NH; ++bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH, kvh = h / d.group();
      const float* row0 = base + size_t(b) * d.T * d.W;
      scores(S.data(), row0 + h * d.HS, row0 + d.k_col(kvh), d, scale);
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
                  S.data(), int(d.T), row0 + d.v_col(kvh), int(d.W), 0.f,
                  o + size_t(b) * d.T * d.QC + h * d.HS, int(d.QC));
    }
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH, int NKV) {
  const Dims d = dims_of(qkv, NH, NKV, "attention_backward");
  const float scale = 1.f / std::sqrt(float(d.HS));
  const float* base = qkv.f32();
  const float* dO_base = dout.f32();
  const float* O_base = out.f32();
  const float* L = lse.f32();
  float* dbase = dqkv.f32();
  const int T = int(d.T), HS = int(d.HS), W = int(d.W), QC = int(d.QC);
#pragma omp parallel
  {
    std::vector<float> P(size_t(d.T * d.T)), dP(size_t(d.T * d.T));
#pragma omp for schedule(static)
    for (int64_t bkv = 0; bkv < d.B * d.NKV; ++bkv) {
      const int64_t b = bkv / d.NKV, kvh = bkv % d.NKV;
      const size_t row0 = size_t(b) * d.T * d.W;
      const float* k = base + row0 + d.k_col(kvh);
      const float* v = base + row0 + d.v_col(kvh);
      float* dk = dbase + row0 + d.k_col(kvh);
      float* dv = dbase + row0 + d.v_col(kvh);
      for (int64_t g = 0; g < d.group(); ++g) {
        const int64_t h = kvh * d.group() + g;
        // The group's first head writes dK and dV, the others add to them.
        const float beta_kv = g == 0 ? 0.f : 1.f;
        const size_t ooff = size_t(b) * d.T * d.QC + h * d.HS;
        const float* q = base + row0 + h * d.HS;
        float* dq = dbase + row0 + h * d.HS;
        const float* dO = dO_base + ooff;
        const float* O = O_base + ooff;
        const float* l = L + (b * d.NH + h) * d.T;
        scores(P.data(), q, k, d, scale);
        for (int64_t i = 0; i < d.T; ++i) {
          float* p = P.data() + i * d.T;
          for (int64_t j = 0; j <= i; ++j) p[j] = std::exp(p[j] - l[i]);
          for (int64_t j = i + 1; j < d.T; ++j) p[j] = 0.f;
        }
        // dV (+)= P^T dO
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, dO, QC,
                    beta_kv, dv, W);
        // dP = dO V^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.f, dO, QC, v, W, 0.f,
                    dP.data(), T);
        // dS = P * (dP - rowsum(dO * O)), with the softmax scale folded in.
        for (int64_t i = 0; i < d.T; ++i) {
          float D = 0.f;
          for (int64_t c = 0; c < d.HS; ++c) D += dO[i * d.QC + c] * O[i * d.QC + c];
          float* p = P.data() + i * d.T;
          const float* dp = dP.data() + i * d.T;
          for (int64_t j = 0; j <= i; ++j) p[j] = p[j] * (dp[j] - D) * scale;
        }
        // dQ = dS K ; dK (+)= dS^T Q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, k, W,
                    0.f, dq, W);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.f, P.data(), T, q, W,
                    beta_kv, dk, W);
      }
    }
  }
}

}  // namespace gpt::cpu
