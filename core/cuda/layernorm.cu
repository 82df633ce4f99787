// LayerNorm over the last dimension, eps = 1e-5 (GPT-2's), alone or fused with the
// residual add before it. One warp per row with fp32 statistics, two passes over the
// row (mean, then centred variance) like the CPU reference, so the two agree to
// rounding. Parameter gradients are column sums over rows, reduced in two fixed-order
// stages (no atomics): bit-identical run to run.
#include <algorithm>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;  // rows per block in the row kernels
constexpr int kMinRowsPerChunk = 64;  // rows per partial sum in the parameter-grad reduction
constexpr int kMaxChunks = 65535;     // chunks run on gridDim.y
constexpr int kColThreads = 128;   // channels per block in the column kernels
// Shared memory a block may use without opting in: rows longer than this (over all the
// block's warps) are re-read from global memory by the fused forward.
constexpr size_t kMaxRowCacheBytes = 48 << 10;
}  // namespace

// ---- kernels ----

// One row: mean, then centred variance, then the normalised output. Both forward
// kernels call this, so the fused residual op gives the plain op's bits for the same
// row values (selective recomputation reruns the plain op on the saved sum). Each lane
// reads only x[c] for c = lane + 32 i, so x may be memory that this lane has just
// written, in shared or global memory, with no barrier.
template <class T>
__device__ __forceinline__ void layernorm_row(T* y, float* mean, float* rstd, const T* x,
                                              AnyFloat weight, AnyFloat bias, int C, int lane) {
  float sum = 0.f;
  for (int c = lane; c < C; c += 32) sum += to_float(x[c]);
  const float m = warp_sum(sum) / float(C);
  float var = 0.f;
  for (int c = lane; c < C; c += 32) {
    float d = to_float(x[c]) - m;
    var += d * d;
  }
  const float s = 1.f / sqrtf(warp_sum(var) / float(C) + 1e-5f);
  for (int c = lane; c < C; c += 32)
    y[c] = from_float<T>((to_float(x[c]) - m) * s * weight.load(c) + bias.load(c));
  if (lane == 0) {
    *mean = m;
    *rstd = s;
  }
}

template <class T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp,
                                         AnyFloat weight, AnyFloat bias, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  layernorm_row(out + base, mean + row, rstd + row, inp + base, weight, bias, C, lane);
}

// sum = a + b rounded to T (what add_kernel stores), then the LayerNorm of that row.
// The warp keeps its row in shared memory when the block's rows fit (row_in_smem),
// otherwise it reads the row back from sum, where it has just written it. sum may
// alias a or b: each element is read and then written by the same lane.
template <class T>
__global__ void residual_layernorm_forward_kernel(T* sum, T* out, float* mean, float* rstd,
                                                  const T* a, const T* b, AnyFloat weight,
                                                  AnyFloat bias, int N, int C,
                                                  bool row_in_smem) {
  extern __shared__ __align__(16) unsigned char row_cache[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerBlock + warp;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  T* x = row_in_smem ? reinterpret_cast<T*>(row_cache) + size_t(warp) * C : sum + base;
  for (int c = lane; c < C; c += 32) {
    const T v = from_float<T>(to_float(a[base + c]) + to_float(b[base + c]));
    sum[base + c] = v;
    if (row_in_smem) x[c] = v;
  }
  layernorm_row(out + base, mean + row, rstd + row, x, weight, bias, C, lane);
}

// dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd, dnorm = weight * dout.
template <class T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp,
                                               AnyFloat weight, const float* mean,
                                               const float* rstd, int N, int C) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const size_t base = size_t(row) * C;
  const float m = mean[row], s = rstd[row];
  float dmean = 0.f, dnorm_xhat = 0.f;
  for (int c = lane; c < C; c += 32) {
    float xhat = (to_float(inp[base + c]) - m) * s;
    float dnorm = weight.load(c) * to_float(dout[base + c]);
    dmean += dnorm;
    dnorm_xhat += dnorm * xhat;
  }
  dmean = warp_sum(dmean) / float(C);
  dnorm_xhat = warp_sum(dnorm_xhat) / float(C);
  for (int c = lane; c < C; c += 32) {
    float xhat = (to_float(inp[base + c]) - m) * s;
    float dnorm = weight.load(c) * to_float(dout[base + c]);
    float g = (dnorm - dmean - xhat * dnorm_xhat) * s;
    dinp[base + c] = from_float<T>(to_float(dinp[base + c]) + g);
  }
}

// Stage 1: partial[chunk][c] over rows [chunk * rows_per_chunk, +rows_per_chunk), in order.
// Threads of a block take consecutive channels, so every row read is coalesced.
template <class T>
__global__ void layernorm_param_partial_kernel(float* part_w, float* part_b, const T* dout,
                                               const T* inp, const float* mean,
                                               const float* rstd, int N, int C,
                                               int rows_per_chunk) {
  const int c = blockIdx.x * kColThreads + threadIdx.x;
  const int chunk = blockIdx.y;
  if (c >= C) return;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float aw = 0.f, ab = 0.f;
  for (int r = r0; r < r1; ++r) {
    const size_t i = size_t(r) * C + c;
    float dy = to_float(dout[i]);
    aw += (to_float(inp[i]) - mean[r]) * rstd[r] * dy;
    ab += dy;
  }
  part_w[size_t(chunk) * C + c] = aw;
  part_b[size_t(chunk) * C + c] = ab;
}

// Stage 2: sum the chunks in order and accumulate into the parameter gradients.
__global__ void layernorm_param_finish_kernel(AnyFloat dweight, AnyFloat dbias,
                                              const float* part_w, const float* part_b,
                                              int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float aw = 0.f, ab = 0.f;
  for (int k = 0; k < chunks; ++k) {
    aw += part_w[size_t(k) * C + c];
    ab += part_b[size_t(k) * C + c];
  }
  dweight.add(c, aw);
  dbias.add(c, ab);
}

// ---- launchers ----

namespace {
// What both forward ops write: out [N, C] in the activations' dtype, the F32 statistics
// mean and rstd [N], from parameters weight and bias [C] of either float dtype.
void check_normalized_out(const Tensor& out, const Tensor& mean, const Tensor& rstd,
                          const Tensor& weight, const Tensor& bias, DType act, int64_t N,
                          int64_t C, const char* op) {
  check_dtype(out, act, op, "out");
  check_dtype(mean, DType::F32, op, "mean");
  check_dtype(rstd, DType::F32, op, "rstd");
  check_float(weight, op, "weight");
  check_float(bias, op, "bias");
  check_numel(out, N * C, op, "out");
  check_numel(mean, N, op, "mean");
  check_numel(rstd, N, op, "rstd");
  check_numel(weight, C, op, "weight");
  check_numel(bias, C, op, "bias");
}
}  // namespace

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias) {
  const char* op = "layernorm_forward";
  check_float(inp, op, "inp");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_normalized_out(out, mean, rstd, weight, bias, inp.dtype, N, C, op);
  if (N == 0) return;
  const unsigned blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layernorm_forward_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, stream()>>>(
        out.data<T>(), mean.f32(), rstd.f32(), inp.data<T>(), any_float(weight),
        any_float(bias), int(N), int(C));
    GPT_LAUNCH_CHECK(op, "layernorm_forward_kernel");
  });
}

void residual_layernorm_forward(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                const Tensor& a, const Tensor& b, const Tensor& weight,
                                const Tensor& bias) {
  const char* op = "residual_layernorm_forward";
  check_float(a, op, "a");
  check_dtype(b, a.dtype, op, "b");
  check_dtype(sum, a.dtype, op, "sum");
  const int64_t C = a.dim(-1), N = a.numel() / C;
  check_numel(b, N * C, op, "b");
  check_numel(sum, N * C, op, "sum");
  check_normalized_out(out, mean, rstd, weight, bias, a.dtype, N, C, op);
  if (N == 0) return;
  const unsigned blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const size_t cache_bytes = size_t(kWarpsPerBlock) * size_t(C) * sizeof(T);
    const bool row_in_smem = cache_bytes <= kMaxRowCacheBytes;
    residual_layernorm_forward_kernel<T>
        <<<blocks, kWarpsPerBlock * 32, row_in_smem ? cache_bytes : 0, stream()>>>(
            sum.data<T>(), out.data<T>(), mean.f32(), rstd.f32(), a.data<T>(), b.data<T>(),
            any_float(weight), any_float(bias), int(N), int(C), row_in_smem);
    GPT_LAUNCH_CHECK(op, "residual_layernorm_forward_kernel");
  });
}

void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd) {
  const char* op = "layernorm_backward";
  check_float(inp, op, "inp");
  check_dtype(dinp, inp.dtype, op, "dinp");
  check_dtype(dout, inp.dtype, op, "dout");
  check_float(dweight, op, "dweight");
  check_float(dbias, op, "dbias");
  check_float(weight, op, "weight");
  check_dtype(mean, DType::F32, op, "mean");
  check_dtype(rstd, DType::F32, op, "rstd");
  const int64_t C = inp.dim(-1), N = inp.numel() / C;
  check_numel(dinp, N * C, op, "dinp");
  check_numel(dout, N * C, op, "dout");
  check_numel(dweight, C, op, "dweight");
  check_numel(dbias, C, op, "dbias");
  check_numel(weight, C, op, "weight");
  check_numel(mean, N, op, "mean");
  check_numel(rstd, N, op, "rstd");
  if (N == 0) return;
  const int64_t rows = std::max<int64_t>(kMinRowsPerChunk, (N + kMaxChunks - 1) / kMaxChunks);
  const int chunks = int((N + rows - 1) / rows);
  const size_t part_floats = size_t(chunks) * size_t(C);
  float* part_w = static_cast<float*>(scratch(2 * part_floats * sizeof(float), op));
  float* part_b = part_w + part_floats;
  const unsigned row_blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const dim3 col_grid(unsigned((C + kColThreads - 1) / kColThreads), unsigned(chunks));
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layernorm_backward_dinp_kernel<T><<<row_blocks, kWarpsPerBlock * 32, 0, stream()>>>(
        dinp.data<T>(), dout.data<T>(), inp.data<T>(), any_float(weight), mean.f32(),
        rstd.f32(), int(N), int(C));
    GPT_LAUNCH_CHECK(op, "layernorm_backward_dinp_kernel");
    layernorm_param_partial_kernel<T><<<col_grid, kColThreads, 0, stream()>>>(
        part_w, part_b, dout.data<T>(), inp.data<T>(), mean.f32(), rstd.f32(), int(N), int(C),
        int(rows));
    GPT_LAUNCH_CHECK(op, "layernorm_param_partial_kernel");
  });
  layernorm_param_finish_kernel<<<unsigned((C + 255) / 256), 256, 0, stream()>>>(
      any_float(dweight), any_float(dbias), part_w, part_b, chunks, int(C));
  GPT_LAUNCH_CHECK(op, "layernorm_param_finish_kernel");
}

}  // namespace gpt::cuda
