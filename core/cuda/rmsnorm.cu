// RMSNorm over the last dimension (LLaMA's), alone or fused with the residual add before
// it: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), no bias. layernorm.cu's
// shape: one warp per row with fp32 statistics, the same arithmetic order as the CPU
// (core/cpu/rmsnorm.cpp), and the weight gradient as column sums reduced in two
// fixed-order stages (no atomics): bit-identical run to run.
#include <algorithm>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kRmsWarpsPerBlock = 8;    // rows per block in the row kernels
constexpr int kRmsMinRowsPerChunk = 64;  // rows per partial sum in the weight-grad reduction
constexpr int kRmsMaxChunks = 65535;     // chunks run on gridDim.y
constexpr int kRmsColThreads = 128;      // channels per block in the column kernels
// Shared memory a block may use without opting in: longer rows (over all the block's
// warps) are re-read from global memory by the fused forward.
constexpr size_t kRmsMaxRowCacheBytes = 48 << 10;
}  // namespace

// ---- kernels ----

// One row, called by both forward kernels, so the fused op gives the plain op's bits
// for the same row values. Each lane reads only x[c] for c = lane + 32 i: x may be what
// this lane has just written, in shared or global memory, with no barrier.
template <class T>
__device__ __forceinline__ void rmsnorm_row(T* y, float* rstd, const T* x, AnyFloat weight,
                                            int C, float eps, int lane) {
  float ss = 0.f;
  for (int c = lane; c < C; c += 32) {
    const float v = to_float(x[c]);
    ss += v * v;
  }
  const float s = 1.f / sqrtf(warp_sum(ss) / float(C) + eps);
  for (int c = lane; c < C; c += 32) y[c] = from_float<T>(to_float(x[c]) * s * weight.load(c));
  if (lane == 0) *rstd = s;
}

template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, AnyFloat weight, int N,
                                       int C, float eps) {
  const int row = blockIdx.x * kRmsWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  rmsnorm_row(out + base, rstd + row, inp + base, weight, C, eps, lane);
}

// sum = a + b rounded to T (what add_kernel stores), then the RMSNorm of that row, kept
// in shared memory when the block's rows fit (row_in_smem), else re-read from sum. sum
// may alias a or b: each element is read and then written by the same lane.
template <class T>
__global__ void residual_rmsnorm_forward_kernel(T* sum, T* out, float* rstd, const T* a,
                                                const T* b, AnyFloat weight, int N, int C,
                                                float eps, bool row_in_smem) {
  extern __shared__ __align__(16) unsigned char rms_row_cache[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kRmsWarpsPerBlock + warp;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  T* x = row_in_smem ? reinterpret_cast<T*>(rms_row_cache) + size_t(warp) * C : sum + base;
  for (int c = lane; c < C; c += 32) {
    const T v = from_float<T>(to_float(a[base + c]) + to_float(b[base + c]));
    sum[base + c] = v;
    if (row_in_smem) x[c] = v;
  }
  rmsnorm_row(out + base, rstd + row, x, weight, C, eps, lane);
}

// dinp += rstd * (g - xhat * mean(g * xhat)), g = weight * dout, xhat = x * rstd.
template <class T>
__global__ void rmsnorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp,
                                             AnyFloat weight, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRmsWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  const float s = rstd[row];
  float g_xhat = 0.f;
  for (int c = lane; c < C; c += 32)
    g_xhat += weight.load(c) * to_float(dout[base + c]) * (to_float(inp[base + c]) * s);
  g_xhat = warp_sum(g_xhat) / float(C);
  for (int c = lane; c < C; c += 32) {
    const float g = weight.load(c) * to_float(dout[base + c]);
    const float dx = (g - to_float(inp[base + c]) * s * g_xhat) * s;
    dinp[base + c] = from_float<T>(to_float(dinp[base + c]) + dx);
  }
}

// Stage 1: partial[chunk][c] = sum of dout * xhat over rows [chunk * rows_per_chunk, +rows),
// in order; consecutive threads take consecutive channels (coalesced rows).
template <class T>
__global__ void rmsnorm_weight_partial_kernel(float* part, const T* dout, const T* inp,
                                              const float* rstd, int N, int C,
                                              int rows_per_chunk) {
  const int c = blockIdx.x * kRmsColThreads + threadIdx.x;
  const int chunk = blockIdx.y;
  if (c >= C) return;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float acc = 0.f;
  for (int r = r0; r < r1; ++r) {
    const size_t i = size_t(r) * C + c;
    acc += to_float(inp[i]) * rstd[r] * to_float(dout[i]);
  }
  part[size_t(chunk) * C + c] = acc;
}

// Stage 2: the chunks summed in order, accumulated into dweight.
__global__ void rmsnorm_weight_finish_kernel(AnyFloat dweight, const float* part, int chunks,
                                             int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.f;
  for (int k = 0; k < chunks; ++k) acc += part[size_t(k) * C + c];
  dweight.add(c, acc);
}

// ---- launchers ----

namespace {
void check_rms_out(const Tensor& out, const Tensor& rstd, const Tensor& weight, DType act,
                   int64_t N, int64_t C, const char* op) {
  check_dtype(out, act, op, "out");
  check_dtype(rstd, DType::F32, op, "rstd");
  check_float(weight, op, "weight");
  check_numel(out, N * C, op, "out");
  check_numel(rstd, N, op, "rstd");
  check_numel(weight, C, op, "weight");
}
unsigned row_blocks(int64_t N) { return unsigned((N + kRmsWarpsPerBlock - 1) / kRmsWarpsPerBlock); }
}  // namespace

void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps) {
  const char* op = "rmsnorm_forward";
  check_float(inp, op, "inp");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_rms_out(out, rstd, weight, inp.dtype, N, C, op);
  if (N == 0) return;
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rmsnorm_forward_kernel<T><<<row_blocks(N), kRmsWarpsPerBlock * 32, 0, stream()>>>(
        out.data<T>(), rstd.f32(), inp.data<T>(), any_float(weight), int(N), int(C), eps);
    GPT_LAUNCH_CHECK(op, "rmsnorm_forward_kernel");
  });
}

void residual_rmsnorm_forward(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a,
                              const Tensor& b, const Tensor& weight, float eps) {
  const char* op = "residual_rmsnorm_forward";
  check_float(a, op, "a");
  check_dtype(b, a.dtype, op, "b");
  check_dtype(sum, a.dtype, op, "sum");
  const int64_t C = a.dim(-1), N = a.numel() / C;
  check_numel(b, N * C, op, "b");
  check_numel(sum, N * C, op, "sum");
  check_rms_out(out, rstd, weight, a.dtype, N, C, op);
  if (N == 0) return;
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const size_t cache_bytes = size_t(kRmsWarpsPerBlock) * size_t(C) * sizeof(T);
    const bool row_in_smem = cache_bytes <= kRmsMaxRowCacheBytes;
    residual_rmsnorm_forward_kernel<T>
        <<<row_blocks(N), kRmsWarpsPerBlock * 32, row_in_smem ? cache_bytes : 0, stream()>>>(
            sum.data<T>(), out.data<T>(), rstd.f32(), a.data<T>(), b.data<T>(), any_float(weight),
            int(N), int(C), eps, row_in_smem);
    GPT_LAUNCH_CHECK(op, "residual_rmsnorm_forward_kernel");
  });
}

void rmsnorm_backward(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  check_float(inp, op, "inp");
  check_dtype(dinp, inp.dtype, op, "dinp");
  check_dtype(dout, inp.dtype, op, "dout");
  check_float(dweight, op, "dweight");
  check_float(weight, op, "weight");
  check_dtype(rstd, DType::F32, op, "rstd");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_numel(dinp, N * C, op, "dinp");
  check_numel(dout, N * C, op, "dout");
  check_numel(dweight, C, op, "dweight");
  check_numel(weight, C, op, "weight");
  check_numel(rstd, N, op, "rstd");
  if (N == 0) return;
  const int64_t rows =
      std::max<int64_t>(kRmsMinRowsPerChunk, (N + kRmsMaxChunks - 1) / kRmsMaxChunks);
  const int chunks = int((N + rows - 1) / rows);
  float* part = static_cast<float*>(scratch(size_t(chunks) * size_t(C) * sizeof(float), op));
  const dim3 col_grid(unsigned((C + kRmsColThreads - 1) / kRmsColThreads), unsigned(chunks));
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rmsnorm_backward_dinp_kernel<T><<<row_blocks(N), kRmsWarpsPerBlock * 32, 0, stream()>>>(
        dinp.data<T>(), dout.data<T>(), inp.data<T>(), any_float(weight), rstd.f32(), int(N),
        int(C));
    GPT_LAUNCH_CHECK(op, "rmsnorm_backward_dinp_kernel");
    rmsnorm_weight_partial_kernel<T><<<col_grid, kRmsColThreads, 0, stream()>>>(
        part, dout.data<T>(), inp.data<T>(), rstd.f32(), int(N), int(C), int(rows));
    GPT_LAUNCH_CHECK(op, "rmsnorm_weight_partial_kernel");
  });
  rmsnorm_weight_finish_kernel<<<unsigned((C + 255) / 256), 256, 0, stream()>>>(
      any_float(dweight), part, chunks, int(C));
  GPT_LAUNCH_CHECK(op, "rmsnorm_weight_finish_kernel");
}

}  // namespace gpt::cuda
