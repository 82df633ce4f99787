// Linear layers through cuBLASLt, plus a deterministic bias-gradient kernel.
//
// cuBLASLt is column-major; a row-major X[r, c] is the column-major X^T, so every
// product is written for the transposes:
//   forward   out^T[OC,N]  = W^T'[C,OC]^T  . inp^T[C,N]    (m=OC, n=N,  k=C)
//   dinp      dinp^T[C,N]  = W^T[C,OC]     . dout^T[OC,N]  (m=C,  n=N,  k=OC)
//   dweight   dW^T[C,OC]  += inp^T[C,N]    . dout[N,OC]    (m=C,  n=OC, k=N)
// matmul_gelu_backward is the dinp product with the DGELU epilogue: D = (A B) * gelu'(aux),
// aux the GELU's input, laid out as D. Used for bf16 only (fp32 mode is the exact
// comparison with the CPU, and keeps the separate kernel), and only where cuBLASLt has an
// algorithm for it; GPT_CUDA_GELU_EPILOGUE=0 turns it off (A/B timing, or a suspect
// cuBLASLt GELU derivative).
// fp32 tensors use exact fp32 (CUBLAS_COMPUTE_32F) unless GPT_CUDA_TF32=1; bf16 tensors
// multiply in bf16 with fp32 accumulation. The bias is fused as the BIAS epilogue; if
// cuBLASLt offers no algorithm for it (unusual dtype mix or alignment), the bias is
// broadcast into out first and the product added with beta = 1.
// Descriptors, layouts and the heuristic's algorithm are made once per GEMM signature
// and kept in the Context's plan cache; only pointers (and beta) change per call.
// The bias gradient is our own two-stage column sum: BGRADB would overwrite rather
// than accumulate, and its reduction order is not documented as deterministic.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <tuple>

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
  const void* gelu_pre = nullptr;  // DGELU epilogue's aux: GELU inputs laid out as D
  int64_t ld_pre = 0;
};

}  // namespace

// ---- plan cache (outside the anonymous namespace: Context points at it) ----

// Everything that decides a plan: shapes, transposes, dtypes, epilogue, the alignment
// class of each pointer (bias too: 0 without one) and whether C is read. The pointers
// themselves are not in it.
// (Context::tf32 is fixed for the context's life, so it needs no place here.)
struct GemmKey {
  int64_t m, n, k, lda, ldb, ldd;
  bool trans_a, trans_b, has_bias, accumulates;
  DType ab_type, d_type, bias_type;
  uint32_t align_a, align_b, align_d, align_bias;
  int64_t ld_pre;  // 0: no DGELU epilogue
  uint32_t align_pre;
  auto tie() const {
    return std::tie(m, n, k, lda, ldb, ldd, trans_a, trans_b, has_bias, accumulates, ab_type,
                    d_type, bias_type, align_a, align_b, align_d, align_bias, ld_pre, align_pre);
  }
  bool operator<(const GemmKey& o) const { return tie() < o.tie(); }
};

// The cuBLASLt descriptors and algorithm of one signature, made once and reused: the
// heuristic query and the descriptor set-up cost more host time than a small GEMM.
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: no algorithm (remembered, so the fallback is not re-queried)
  GemmPlan() = default;
  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;
  ~GemmPlan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Owned by the Context. Not locked: every op is issued from one host thread onto one
// stream. Bounded, so a run with ever-changing shapes cannot grow it without limit.
struct GemmPlanCache {
  static constexpr size_t kMaxPlans = 256;
  std::map<GemmKey, std::unique_ptr<GemmPlan>> plans;
};

namespace {

// Frees the heuristic's preference even when a check throws.
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  ~Preference() {
    if (p) cublasLtMatmulPreferenceDestroy(p);
  }
};

// The heuristic is asked with this call's bias (or GELU input) pointer set, as it was
// before plans were cached; later calls share the key, so the same alignment class.
std::unique_ptr<GemmPlan> make_plan(const char* op, const GemmKey& key, const void* bias,
                                    const void* gelu_pre) {
  Context& ctx = context();
  const cublasComputeType_t compute =
      key.ab_type == DType::F32 && ctx.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  auto plan = std::make_unique<GemmPlan>();
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescCreate(&plan->op, compute, CUDA_R_32F));
  const cublasOperation_t ta = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                      sizeof ta));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                      sizeof tb));
  if (key.has_bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bt = cuda_type(key.bias_type);
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &epi, sizeof epi));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             plan->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  if (key.ld_pre) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DGELU;
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &epi, sizeof epi));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &key.ld_pre,
                             sizeof key.ld_pre));
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &gelu_pre,
                             sizeof gelu_pre));
  }
  const cudaDataType_t ab = cuda_type(key.ab_type), dt = cuda_type(key.d_type);
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&plan->a, ab, key.trans_a ? key.k : key.m,
                                                  key.trans_a ? key.m : key.k, key.lda));
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&plan->b, ab, key.trans_b ? key.n : key.k,
                                                  key.trans_b ? key.k : key.n, key.ldb));
  GPT_CUBLAS_CHECK(op, cublasLtMatrixLayoutCreate(&plan->d, dt, key.m, key.n, key.ldd));
  Preference pref;
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceCreate(&pref.p));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                           &ctx.workspace_bytes, sizeof ctx.workspace_bytes));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_a,
                           sizeof key.align_a));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_b,
                           sizeof key.align_b));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_d,
                           sizeof key.align_d));
  GPT_CUBLAS_CHECK(op, cublasLtMatmulPreferenceSetAttribute(
                           pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_d,
                           sizeof key.align_d));
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      ctx.lt, plan->op, plan->a, plan->b, plan->d, plan->d, pref.p, 1, &best, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    if (key.has_bias || key.ld_pre) return plan;  // found = false: the caller falls back
    fail(std::string("cuda ") + op + ": cuBLASLt has no algorithm for m=" +
         std::to_string(key.m) + " n=" + std::to_string(key.n) + " k=" + std::to_string(key.k) +
         " (" + cublasLtGetStatusString(st) + ")");
  }
  plan->algo = best.algo;
  plan->found = true;
  return plan;
}

// D = A' B' + beta D (+ bias), or with gelu_pre D = (A' B') * gelu'(gelu_pre). Returns false
// only when a fused epilogue (bias, DGELU) has no algorithm or its operand is misaligned.
bool gemm(const char* op, const Gemm& g) {
  Context& ctx = context();
  if (g.ab_type == DType::F32 && g.d_type != DType::F32)
    fail(std::string("cuda ") + op + ": f32 inputs need an f32 output");
  // The fused bias epilogue reads the bias with 16-byte vector loads (llm.c asserts the
  // same); biases are slices of the flat parameter buffer at any offset, so a narrower
  // one takes the caller's broadcast fallback rather than risk a misaligned access.
  if (g.bias && alignment_of(g.bias) < 16) return false;
  // The aux matrix's leading dimension must be a multiple of 8 (cublasLt.h); the same
  // 16-byte rule as the bias is applied to its pointer.
  if (g.gelu_pre && (g.ld_pre % 8 != 0 || alignment_of(g.gelu_pre) < 16)) return false;
  const GemmKey key{g.m, g.n, g.k, g.lda, g.ldb, g.ldd,
                    g.trans_a, g.trans_b, g.bias != nullptr, g.beta != 0.f,
                    g.ab_type, g.d_type, g.bias ? g.bias_type : DType::F32,
                    alignment_of(g.A), alignment_of(g.B), alignment_of(g.D),
                    g.bias ? alignment_of(g.bias) : 0u,
                    g.gelu_pre ? g.ld_pre : 0, g.gelu_pre ? alignment_of(g.gelu_pre) : 0u};
  if (!ctx.gemm_plans) ctx.gemm_plans = new GemmPlanCache;  // leaked with the Context
  auto& plans = ctx.gemm_plans->plans;
  auto it = plans.find(key);
  if (it == plans.end()) {
    // Destroying descriptors is safe with GEMMs still queued: cublasLtMatmul reads them
    // on the host when it enqueues.
    if (plans.size() >= GemmPlanCache::kMaxPlans) plans.clear();
    it = plans.emplace(key, make_plan(op, key, g.bias, g.gelu_pre)).first;
  }
  GemmPlan& plan = *it->second;
  if (!plan.found) return false;
  // The bias pointer is a descriptor attribute, so a shared descriptor gets this call's
  // pointer just before its matmul. Safe because calls are serialised: one host thread
  // issues them all onto one stream, and the matmul reads the attribute when enqueued.
  if (g.bias)
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(
                             plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
  if (g.gelu_pre)
    GPT_CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan.op,
                                                        CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                        &g.gelu_pre, sizeof g.gelu_pre));
  const float alpha = 1.f;
  const cublasStatus_t st =
      cublasLtMatmul(ctx.lt, plan.op, &alpha, g.A, plan.a, g.B, plan.b, &g.beta, g.D, plan.d, g.D,
                     plan.d, &plan.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream);
  // A fused epilogue the heuristic offered but the matmul then refuses (nothing was
  // queued): remembered as unavailable, and this call takes the caller's fallback.
  if ((g.bias || g.gelu_pre) &&
      (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)) {
    plan.found = false;
    return false;
  }
  if (st != CUBLAS_STATUS_SUCCESS)
    fail_call(op, "cublasLtMatmul", cublasLtGetStatusString(st), __FILE__, __LINE__);
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

namespace {

// The argument checks both backward entries share; returns N, C, OC.
struct BackwardDims {
  int64_t N, C, OC;
};
BackwardDims check_backward(const char* op, const Tensor* dinp, const Tensor& dweight,
                            const Tensor* dbias, const Tensor& dout, const Tensor& inp,
                            const Tensor& weight) {
  check_float(inp, op, "inp");
  check_dtype(weight, inp.dtype, op, "weight");
  check_dtype(dout, inp.dtype, op, "dout");
  const int64_t C = inp.dim(-1), N = inp.numel() / C, OC = weight.dim(0);
  check_numel(weight, OC * C, op, "weight");
  check_numel(dout, N * OC, op, "dout");
  if (dweight.defined()) {  // undefined: the input gradient only
    check_float(dweight, op, "dweight");
    check_numel(dweight, OC * C, op, "dweight");
  }
  if (dinp) {
    check_float(*dinp, op, "dinp");
    check_numel(*dinp, N * C, op, "dinp");
  }
  if (dbias) {
    check_float(*dbias, op, "dbias");
    check_numel(*dbias, OC, op, "dbias");
  }
  return {N, C, OC};
}

// dweight += dout^T inp and dbias += column sums of dout (deterministic, two stages).
void weight_and_bias_grads(const char* op, const BackwardDims& d, Tensor& dweight, Tensor* dbias,
                           const Tensor& dout, const Tensor& inp) {
  const int64_t N = d.N, C = d.C, OC = d.OC;
  if (!dweight.defined()) return;  // the input gradient only (a zero-bubble B pass)
  gemm(op, Gemm{false, true, C, OC, N, inp.raw(), C, dout.raw(), OC, dweight.raw(), C, inp.dtype,
                dweight.dtype, 1.f});
  if (!dbias) return;
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
  colsum_finish_kernel<<<unsigned((OC + 255) / 256), 256, 0, stream()>>>(any_float(*dbias), part,
                                                                        chunks, int(OC));
  GPT_LAUNCH_CHECK(op, "colsum_finish_kernel");
}

void zero_inp_grad(const char* op, Tensor& dinp) {
  GPT_CUDA_CHECK(op, cudaMemsetAsync(dinp.raw(), 0, dinp.nbytes(), stream()));
}

Gemm dinp_gemm(const BackwardDims& d, Tensor& dinp, const Tensor& dout, const Tensor& weight) {
  return Gemm{false, false, d.C, d.N, d.OC, weight.raw(), d.C, dout.raw(), d.OC, dinp.raw(), d.C,
              weight.dtype, dinp.dtype, 0.f};
}

}  // namespace

void matmul_backward(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight) {
  const char* op = "matmul_backward";
  const BackwardDims d = check_backward(op, dinp, dweight, dbias, dout, inp, weight);
  if (d.N == 0 || d.C == 0) return;
  if (d.OC == 0) {  // an empty sum: dinp is zeros (it is overwritten); nothing to add to dweight
    if (dinp) zero_inp_grad(op, *dinp);
    return;
  }
  if (dinp) gemm(op, dinp_gemm(d, *dinp, dout, weight));
  weight_and_bias_grads(op, d, dweight, dbias, dout, inp);
}

namespace {
int64_t g_fused_gelu_gemms = 0;  // matmul_gelu_backward calls that took the DGELU epilogue
}  // namespace

// Tests run the fused and the separate path side by side; returns the previous setting.
bool set_gelu_epilogue_for_tests(bool on) {
  const bool previous = context().gelu_epilogue;
  context().gelu_epilogue = on;
  return previous;
}

// So a test can tell the epilogue ran, rather than the fallback twice.
int64_t fused_gelu_gemms_for_tests() { return g_fused_gelu_gemms; }

void matmul_gelu_backward(Tensor& dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                          const Tensor& inp, const Tensor& weight, const Tensor& pre) {
  const char* op = "matmul_gelu_backward";
  const BackwardDims d = check_backward(op, &dinp, dweight, dbias, dout, inp, weight);
  check_dtype(dinp, inp.dtype, op, "dinp");
  check_dtype(pre, inp.dtype, op, "pre");
  check_numel(pre, d.N * d.C, op, "pre");
  if (d.N == 0 || d.C == 0) return;
  if (d.OC == 0) {
    zero_inp_grad(op, dinp);
    return;
  }
  Gemm g = dinp_gemm(d, dinp, dout, weight);
  bool fused = false;
  if (inp.dtype == DType::BF16 && context().gelu_epilogue) {
    g.gelu_pre = pre.raw();
    g.ld_pre = d.C;
    fused = gemm(op, g);
    g.gelu_pre = nullptr;
    if (fused) {
      ++g_fused_gelu_gemms;
    } else {
      static bool told = false;  // once per process: a timing question, not an error
      if (!told)
        std::fprintf(stderr, "cuda %s: no cuBLASLt DGELU epilogue for %lld x %lld (C x N); "
                     "using the separate GELU kernel\n", op, (long long)d.C, (long long)d.N);
      told = true;
    }
  }
  if (!fused) {  // the product, then the GELU gradient applied in place
    gemm(op, g);
    gelu_backward(dinp, pre, dinp);
  }
  weight_and_bias_grads(op, d, dweight, dbias, dout, inp);
}

}  // namespace gpt::cuda
