// Linear layers through OpenBLAS sgemm (row-major; weights [OC, C] as in PyTorch).
#include <cblas.h>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  check_f32(inp, "matmul_forward", "inp");
  check_f32(weight, "matmul_forward", "weight");
  const int64_t C = inp.dim(-1), N = inp.numel() / C, OC = weight.dim(0);
  GPT_CHECK(weight.dim(1) == C, "matmul_forward: weight " + shape_str(weight.shape) +
                                    " does not match input width " + std::to_string(C));
  float* y = out.f32();
  float beta = 0.f;
  if (bias) {
    const float* b = bias->f32();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) y[size_t(n) * OC + o] = b[o];
    beta = 1.f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(N), int(OC), int(C), 1.f, inp.f32(),
              int(C), weight.f32(), int(C), beta, y, int(OC));
}

void matmul_backward(Tensor* dinp, Tensor* dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight) {
  const int64_t C = inp.dim(-1), N = inp.numel() / C, OC = weight.dim(0);
  const float* dy = dout.f32();
  if (dinp)  // dinp[N,C] = dout[N,OC] @ weight[OC,C]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(N), int(C), int(OC), 1.f, dy,
                int(OC), weight.f32(), int(C), 0.f, dinp->f32(), int(C));
  // dweight[OC,C] += dout^T @ inp
  if (dweight)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(OC), int(C), int(N), 1.f, dy, int(OC),
                inp.f32(), int(C), 1.f, dweight->f32(), int(C));
  if (dbias) {
    float* db = dbias->f32();
#pragma omp parallel for schedule(static)
    for (int64_t o0 = 0; o0 < OC; o0 += 64) {
      int64_t o1 = o0 + 64 < OC ? o0 + 64 : OC;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = o0; o < o1; ++o) db[o] += dy[size_t(n) * OC + o];
    }
  }
}

}  // namespace gpt::cpu
