// Linear layers through cuBLASLt, plus a deterministic bias-gradient kernel.
//
// cuBLASLt is column-major; a row-major X[r, c] is the column-major X^T, so every
// product is written for the transposes:
//   forward   out^T[OC,N]  = W^T'[C,OC]^T  . inp^T[C,N]    (m=OC, n=N,  k=C)
//   dinp      dinp^T[C,N] += W^T[C,OC]     . dout^T[OC,N]  (m=C,  n=N,  k=OC)
//   dweight   dW^T[C,OC]  += inp^T[C,N]    . dout[N,OC]    (m=C,  n=OC, k=N)
// fp32 tensors use exact fp32 (CUBLAS_COMPUTE_32F) unless GPT_CUDA_TF32=1; bf16 tensors
// multiply in bf16 with fp32 accumulation. The bias is fused as the BIAS epilogue; if
// cuBLASLt offers no algorithm for it (unusual dtype mix or alignment), the bias is
// broadcast into out first and the product added with beta = 1.
// The bias gradient is our own two-stage column sum: BGRADB would overwrite rather
// than accumulate, and its reduction order is not documented as deterministic.
#include <algorithm>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kMinRowsPerChunk = 64;  // rows per partial in the bias-gradient reduction
constexpr int kMaxChunks = 65535;     // chunks run on gridDim.y
constexpr int kColThreads = 128;
}  // namespace

// ---- kernels ----

template <class T>
__global__ void colsum_partial_kernel(float* part, const T* x, int N, int C, int rows_per_chunk) {
  const int c = blockIdx.x * kColThreads + threadIdx.x;
  if (c >= C) return;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float acc = 0.f;
  for (int r = r0; r < r1; ++r) acc += to_float(x[size_t(r) * C + c]);
  part[size_t(blockIdx.y) * C + c] = acc;
}

__global__ void colsum_finish_kernel(AnyFloat dst, const float* part, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.f;
  for (int k = 0; k < chunks; ++k) acc += part[size_t(k) * C + c];
  dst.add(c, acc);
}

template <class T>
__global__ void broadcast_rows_kernel(T* out, AnyFloat bias, size_t N, int OC) {
  const size_t n = N * size_t(OC);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(bias.load(i % size_t(OC)));
}

// ---- cuBLASLt ----

namespace {

cudaDataType_t cuda_type(DType dt) { return dt == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic otherwise
// assumes 256-byte alignment, which a tensor view at an odd offset breaks.
uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a >>= 1;
  return a;
}

struct Gemm {
  bool trans_a, trans_b;
  int64_t m, n, k;
  const void* A;
  int64_t lda;
  const void* B;
  int64_t ldb;
  void* D;  // also C: beta = 1 accumulates into D
  int64_t ldd;
  DType ab_type, d_type;
  float beta;
  const void* bias = nullptr;  // length m, fused epilogue
  DType bias_type = DType::F32;
};

// Owns the cuBLASLt descriptors of one call, so an error path cannot leak them.
struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// D = A' B' + beta D (+ bias). Returns false only when a fused bias has no algorithm.
bool gemm(const char* op, const Gemm& g) {
  Context& ctx = context();
  if (g.ab_type == DType::F32 && g.d_type != DType::F32)
    fail(std::string("cuda ") + op + ": f32 inputs need an f32 output");
  const cublasComputeType_t compute =
      g.ab_type == DType::F32 && ctx.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  LtDescs s;
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescCreate(&s.op, compute, CUDA_R_32F));
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                      sizeof ta));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                      sizeof tb));
  if (g.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bt = cuda_type(g.bias_type);
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                        sizeof epi));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             s.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             s.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  const cudaDataType_t ab = cuda_type(g.ab_type), dt = cuda_type(g.d_type);
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&s.a, ab, g.trans_a ? g.k : g.m,
                                                  g.trans_a ? g.m : g.k, g.lda));
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&s.b, ab, g.trans_b ? g.n : g.k,
                                                  g.trans_b ? g.k : g.n, g.ldb));
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&s.d, dt, g.m, g.n, g.ldd));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceCreate(&s.pref));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           s.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                           &ctx.workspace_bytes, sizeof ctx.workspace_bytes));
  const uint32_t al_a = alignment_of(g.A), al_b = alignment_of(g.B), al_d = alignment_of(g.D);
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           s.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           s.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           s.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           s.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, s.op, s.a, s.b, s.d, s.d, s.pref, 1,
                                                     &best, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    if (g.bias) return false;
    fail(std::string("cuda ") + op + ": cuBLASLt has no algorithm for m=" + std::to_string(g.m) +
         " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) + " (" +
         cublasLtGetStatusString(st) + ")");
  }
  const float alpha = 1.f;
  GPT_CUBLAS_CHECK(op, cublasLtMatmul(ctx.lt, s.op, &alpha, g.A, s.a, g.B, s.b, &g.beta, g.D, s.d,
                                      g.D, s.d, &best.algo, ctx.workspace, ctx.workspace_bytes,
                                      ctx.stream));
  return true;
}

}  // namespace

// ---- launchers ----

void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  const char* op = "matmul_forward";
  check_float(inp, op, "inp");
  check_dtype(weight, inp.dtype, op, "weight");
  check_float(out, op, "out");
  const int64_t C = inp.dim(-1), N = inp.numel() / C, OC = weight.dim(0);
  if (weight.ndim() != 2 || weight.dim(1) != C)
    fail("cuda matmul_forward: weight " + shape_str(weight.shape) +
         " does not match input width " + std::to_string(C));
  check_numel(out, N * OC, op, "out");
  if (bias) {
    check_float(*bias, op, "bias");
    check_numel(*bias, OC, op, "bias");
  }
  if (N == 0 || OC == 0) return;
  Gemm g{true, false, OC, N, C, weight.raw(), C, inp.raw(), C, out.raw(), OC,
         inp.dtype, out.dtype, 0.f};
  if (bias) {
    g.bias = bias->raw();
    g.bias_type = bias->dtype;
    if (gemm(op, g)) return;
    // No fused-bias algorithm: out = bias (broadcast), then out += inp W^T.
    const size_t n = size_t(N) * size_t(OC);
    dispatch_float(out.dtype, op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      broadcast_rows_kernel<T><<<grid_for(n, 256), 256, 0, stream()>>>(
          out.data<T>(), any_float(*bias), size_t(N), int(OC));
      GPT_LAUNCH_CHECK(op, "broadcast_rows_kernel");
    });
    g.bias = nullptr;
    g.beta = 1.f;
  }
  gemm(op, g);
}

void matmul_backward(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight) {
  const char* op = "matmul_backward";
  check_float(inp, op, "inp");
  check_dtype(weight, inp.dtype, op, "weight");
  check_dtype(dout, inp.dtype, op, "dout");
  check_float(dweight, op, "dweight");
  const int64_t C = inp.dim(-1), N = inp.numel() / C, OC = weight.dim(0);
  check_numel(weight, OC * C, op, "weight");
  check_numel(dout, N * OC, op, "dout");
  check_numel(dweight, OC * C, op, "dweight");
  if (dinp) {
    check_float(*dinp, op, "dinp");
    check_numel(*dinp, N * C, op, "dinp");
  }
  if (dbias) {
    check_float(*dbias, op, "dbias");
    check_numel(*dbias, OC, op, "dbias");
  }
  if (N == 0 || OC == 0 || C == 0) return;
  if (dinp)
    gemm(op, Gemm{false, false, C, N, OC, weight.raw(), C, dout.raw(), OC, dinp->raw(), C,
                  inp.dtype, dinp->dtype, 1.f});
  gemm(op, Gemm{false, true, C, OC, N, inp.raw(), C, dout.raw(), OC, dweight.raw(), C, inp.dtype,
                dweight.dtype, 1.f});
  if (dbias) {
    const int64_t rows = std::max<int64_t>(kMinRowsPerChunk, (N + kMaxChunks - 1) / kMaxChunks);
    const int chunks = int((N + rows - 1) / rows);
    float* part = static_cast<float*>(scratch(size_t(chunks) * size_t(OC) * sizeof(float), op));
    const dim3 grid(unsigned((OC + kColThreads - 1) / kColThreads), unsigned(chunks));
    dispatch_float(dout.dtype, op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      colsum_partial_kernel<T><<<grid, kColThreads, 0, stream()>>>(part, dout.data<T>(), int(N),
                                                                    int(OC), int(rows));
      GPT_LAUNCH_CHECK(op, "colsum_partial_kernel");
    });
    colsum_finish_kernel<<<unsigned((OC + 255) / 256), 256, 0, stream()>>>(any_float(*dbias),
                                                                          part, chunks, int(OC));
    GPT_LAUNCH_CHECK(op, "colsum_finish_kernel");
  }
}

}  // namespace gpt::cuda
