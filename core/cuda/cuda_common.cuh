// CUDA backend internals shared by the kernel files in core/cuda: the one backend
// context (compute stream, cuBLASLt handle, workspace, scratch), error checks that name
// the op and the failing call, dtype dispatch, bf16 helpers and the launcher
// declarations (one per ops-table entry, same signatures as core/cpu).
//
// Dtype rules (checked by every launcher, with a message naming the argument):
//  * Activations are F32 or BF16; one op's activations share one dtype. Templates are
//    instantiated per activation type.
//  * Parameters and parameter gradients (weights, biases, embeddings and their grads)
//    may be F32 or BF16 independently of the activations: kernels read them through
//    AnyFloat, a pointer plus a dtype flag (a warp-uniform branch, free on the GPU),
//    which spares a template instantiation per combination.
//  * mean, rstd, lse and losses are F32; AdamW works on F32 only.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"

namespace gpt::cuda {

using bf16 = __nv_bfloat16;

[[noreturn]] void fail_call(const char* op, const char* call, const char* what, const char* file,
                            int line);

// Every CUDA/cuBLAS call goes through one of these: the error names the op and the call.
#define GPT_CUDA_CHECK(op, call)                                                         \
  do {                                                                                   \
    cudaError_t gpt_e_ = (call);                                                         \
    if (gpt_e_ != cudaSuccess)                                                           \
      ::gpt::cuda::fail_call(op, #call, cudaGetErrorString(gpt_e_), __FILE__, __LINE__); \
  } while (0)
#define GPT_CUBLAS_CHECK(op, call)                                                             \
  do {                                                                                         \
    cublasStatus_t gpt_s_ = (call);                                                            \
    if (gpt_s_ != CUBLAS_STATUS_SUCCESS)                                                       \
      ::gpt::cuda::fail_call(op, #call, cublasLtGetStatusString(gpt_s_), __FILE__, __LINE__); \
  } while (0)
// After every kernel launch: catches bad launch configurations at the launch site.
void check_launch(const char* op, const char* kernel, const char* file, int line);
#define GPT_LAUNCH_CHECK(op, kernel) ::gpt::cuda::check_launch(op, kernel, __FILE__, __LINE__)

struct GemmPlanCache;  // matmul.cu: cuBLASLt descriptors and algorithm per GEMM signature

// A token-range check queued on the stream whose verdict is not read back yet
// (token_check.cu). The i-th pending check owns slot i of Context::token_check_slots.
struct PendingTokenCheck {
  const char* op;    // the launcher that queued it (a string literal)
  const char* what;  // "token", "target token" (a string literal)
  int64_t V;
};
// Checks in flight at most; one more first reads these back (and so waits).
constexpr int kTokenCheckSlots = 64;

// The backend's state, created on first use and never destroyed (destruction at exit
// would race the CUDA runtime's own teardown). Not a hidden global of the kernels: they
// receive everything as arguments; only launchers ask for the stream and buffers.
struct Context {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0;
  void* scratch = nullptr;  // grow-only, see scratch()
  size_t scratch_bytes = 0;
  // kTokenCheckSlots device words, one per token-range check in flight.
  unsigned long long* token_check_slots = nullptr;
  std::vector<PendingTokenCheck> pending_token_checks;
  bool tf32 = false;           // GPT_CUDA_TF32=1 lets fp32 matmuls use TF32 tensor cores
  bool gelu_epilogue = true;  // GPT_CUDA_GELU_EPILOGUE=0: no cuBLASLt DGELU (matmul.cu)
  GemmPlanCache* gemm_plans = nullptr;  // created by the first matmul
};
Context& context();
inline cudaStream_t stream() { return context().stream; }

// Temporary device memory valid until the next call to scratch(): the stream orders its
// uses, so an op takes it once and carves what it needs (growing it synchronizes).
void* scratch(size_t bytes, const char* op);
inline size_t align_up(size_t n, size_t a = 256) { return (n + a - 1) / a * a; }

// Argument checks; the message names the op, the argument and what it got.
void check_cuda(const Tensor& t, const char* op, const char* arg);
void check_float(const Tensor& t, const char* op, const char* arg);  // F32 or BF16 on CUDA
void check_dtype(const Tensor& t, DType dt, const char* op, const char* arg);
void check_numel(const Tensor& t, int64_t n, const char* op, const char* arg);

// Token ids outside [0, V) (negatives are allowed, as ignored targets, when
// allow_negative): checked on the stream without waiting for it (token_check.cu). The
// error ("<what> id X at position P is outside the vocabulary [0, V)", naming op) is
// thrown by the next resolve_token_checks(), so the kernels that read the ids must bound
// them themselves.
void check_token_range(const Tensor& ids, int64_t V, bool allow_negative, const char* op,
                       const char* what);
// Reads back the verdicts of the pending token checks and throws for the first (in queue
// order) that found a bad id; a no-op when none is pending. Called by the entries that
// wait for the stream anyway: copy_to_host, copy_from_host, synchronize, sum_squares
// (`at` names it in the message). Not by free, which must not throw.
void resolve_token_checks(const char* at);

// Grid size for grid-stride loops over n elements.
inline unsigned grid_for(size_t n, int threads, size_t max_blocks = 65536) {
  size_t b = (n + size_t(threads) - 1) / size_t(threads);
  return unsigned(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

template <class T> struct TypeTag { using type = T; };
// Calls f(TypeTag<float>) or f(TypeTag<bf16>) for a floating dtype.
template <class F> void dispatch_float(DType dt, const char* op, F&& f) {
  if (dt == DType::F32) {
    f(TypeTag<float>{});
  } else if (dt == DType::BF16) {
    f(TypeTag<bf16>{});
  } else {
    fail(std::string(op) + ": expected an f32 or bf16 tensor, got " + dtype_name(dt));
  }
}

// ---- device helpers ----

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }
template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

// A float vector of either dtype (parameters and their gradients).
struct AnyFloat {
  void* ptr;
  bool is_bf16;
  __device__ __forceinline__ float load(size_t i) const {
    return is_bf16 ? __bfloat162float(static_cast<const bf16*>(ptr)[i])
                   : static_cast<const float*>(ptr)[i];
  }
  __device__ __forceinline__ void store(size_t i, float x) const {
    if (is_bf16)
      static_cast<bf16*>(ptr)[i] = __float2bfloat16_rn(x);
    else
      static_cast<float*>(ptr)[i] = x;
  }
  __device__ __forceinline__ void add(size_t i, float x) const { store(i, load(i) + x); }
};
inline AnyFloat any_float(const Tensor& t) { return {t.raw(), t.dtype == DType::BF16}; }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---- launchers: one per ops-table entry, in the files named ----

// encoder.cu
void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);
// layernorm.cu
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias);
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd);
void residual_layernorm_forward(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                const Tensor& a, const Tensor& b, const Tensor& weight,
                                const Tensor& bias);
// matmul.cu
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias);
void matmul_backward(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight);
// elementwise.cu
void gelu_forward(Tensor& out, const Tensor& inp);
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
void matmul_gelu_backward(Tensor& dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                          const Tensor& inp, const Tensor& weight, const Tensor& pre);
void add(Tensor& out, const Tensor& a, const Tensor& b);
void accumulate(Tensor& dst, const Tensor& src);
void scale(Tensor& x, float s);
void convert(Tensor& dst, const Tensor& src);
// attention.cu
void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH);
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH);
// Grouped-query heads (the two above are NKV = NH). The tensor-core paths below take the
// multi-head layout only; NKV < NH runs on the fp32 CUDA-core kernels.
void attention_gqa_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV);
void attention_gqa_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out,
                            const Tensor& lse, const Tensor& qkv, int NH, int NKV);
// Forces (true) or releases (false) the fp32 CUDA-core attention kernels for bf16, as
// GPT_ATTENTION=simple does; returns the previous setting. For tests.
bool set_attention_kernel_for_tests(bool simple);
// Forces (true) or releases (false) the inline-PTX mma kernels where they apply, as
// GPT_ATTENTION=mma does; returns the previous setting. For tests. Either setter, when
// releasing, goes back to the default (not to what the other one had set).
bool set_attention_mma_for_tests(bool mma);
// attention_tc.cu: the bf16 tensor-core path behind attention.cu's launchers (HS a
// multiple of 16 up to 128, 16-byte-aligned tensors, dimensions already checked; delta is
// rowsum(dout * out) as [B, NH, T]).
bool attention_tc_available();
void attention_forward_tc(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                          int HS);
void attention_backward_tc(bf16* dqkv, const bf16* dout, const float* lse, const float* delta,
                           const bf16* qkv, int B, int T, int C, int NH, int HS);
// attention_mma.cu: the inline-PTX mma.sync path (GPT_ATTENTION=mma), same contract as
// the _tc functions for the head sizes attention_mma_supports().
bool attention_mma_supports(int HS);
bool attention_mma_available();
void attention_forward_mma(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                           int HS);
void attention_backward_mma(bf16* dqkv, const bf16* dout, const float* lse, const float* delta,
                            const bf16* qkv, int B, int T, int C, int NH, int HS);
// rmsnorm.cu
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps);
void rmsnorm_backward(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd);
void residual_rmsnorm_forward(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a,
                              const Tensor& b, const Tensor& weight, float eps);
// rope.cu
void rope_forward(Tensor& out, const Tensor& qkv, const RopeArgs& args);
void rope_backward(Tensor& dqkv, const Tensor& dout, const RopeArgs& args);
// swiglu.cu
void swiglu_forward(Tensor& out, const Tensor& inp);
void swiglu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
// cross_entropy.cu
void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets);
void cross_entropy_forward_backward(Tensor& losses, Tensor& logits, const Tensor& targets,
                                    float dloss);
// encoder.cu and cross_entropy.cu: the vocabulary-slice forms
void encoder_slice_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                           int64_t vocab_begin, int64_t V);
void encoder_slice_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens,
                            int64_t vocab_begin);
void cross_entropy_slice_stats(Tensor& stats, const Tensor& logits, const Tensor& targets,
                               int64_t vocab_begin, int64_t V);
void cross_entropy_slice_forward_backward(Tensor& losses, Tensor* logits, const Tensor& targets,
                                          const Tensor& stats, int64_t vocab_begin, int64_t V,
                                          float dloss);
// moe_rows.cu (f32 only)
void moe_gather_rows(Tensor& out, const Tensor& x, const Tensor& row_token, int64_t rows);
void moe_combine(Tensor& out, const Tensor& expert_out, const Tensor& row, const Tensor& weight, int64_t k);
void moe_combine_backward(Tensor& d_expert_out, Tensor& dweight, const Tensor& dout, const Tensor& expert_out,
                          const Tensor& row, const Tensor& weight, int64_t k);
void moe_scatter_add_rows(Tensor& dx, const Tensor& d_expert_in, const Tensor& row, int64_t k);
// adamw.cu
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& a);
double sum_squares(const Tensor& x);

}  // namespace gpt::cuda
