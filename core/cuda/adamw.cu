// Optimizer-step ops: AdamW over flat fp32 ranges, and the squared norm used for
// gradient clipping.
//
// AdamW follows torch.optim.AdamW's operation order (decay, then the bias-corrected
// step), with the step-dependent scalars computed on the host exactly as the CPU
// backend does, so the two agree to fp32 rounding. It is bandwidth-bound (4 loads, 3
// stores per element), hence float4 accesses when all four ranges are 16-byte aligned.
//
// sum_squares is a deterministic two-stage reduction in double: a fixed number of
// blocks (independent of the GPU) each reduce a fixed strided subset in a fixed tree
// order, then one block sums the partials in order. Same input, same bits, any GPU.
#include <cmath>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kSumBlocks = 512;  // fixed: part of the reduction order
}  // namespace

// ---- kernels ----

struct AdamWScalars {
  float beta1, beta2, eps, decay, step_size, bc2_sqrt;
};

// The step's scalars, computed once on the host (bias corrections, decoupled decay).
inline AdamWScalars adamw_scalars(const AdamWArgs& a) {
  AdamWScalars s;
  s.beta1 = a.beta1;
  s.beta2 = a.beta2;
  s.eps = a.eps;
  s.decay = 1.f - a.lr * a.weight_decay;
  s.step_size = a.lr / (1.f - std::pow(a.beta1, float(a.step)));
  s.bc2_sqrt = std::sqrt(1.f - std::pow(a.beta2, float(a.step)));
  return s;
}

__device__ __forceinline__ void adamw_one(float& p, float g, float& m, float& v,
                                          const AdamWScalars& s) {
  m = s.beta1 * m + (1.f - s.beta1) * g;
  v = s.beta2 * v + (1.f - s.beta2) * g * g;
  const float denom = sqrtf(v) / s.bc2_sqrt + s.eps;
  p = p * s.decay - s.step_size * m / denom;
}

// Elements [0, 4 * n4) as float4 (when aligned), the rest one by one.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t n,
                             size_t n4, AdamWScalars s) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t first = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (size_t i = first; i < n4; i += stride) {
    float4 p = reinterpret_cast<float4*>(param)[i];
    const float4 g = reinterpret_cast<const float4*>(grad)[i];
    float4 mm = reinterpret_cast<float4*>(m)[i];
    float4 vv = reinterpret_cast<float4*>(v)[i];
    adamw_one(p.x, g.x, mm.x, vv.x, s);
    adamw_one(p.y, g.y, mm.y, vv.y, s);
    adamw_one(p.z, g.z, mm.z, vv.z, s);
    adamw_one(p.w, g.w, mm.w, vv.w, s);
    reinterpret_cast<float4*>(param)[i] = p;
    reinterpret_cast<float4*>(m)[i] = mm;
    reinterpret_cast<float4*>(v)[i] = vv;
  }
  for (size_t i = 4 * n4 + first; i < n; i += stride) adamw_one(param[i], grad[i], m[i], v[i], s);
}

// Tree sum of one double per thread, in a fixed order; thread 0 gets the total.
__device__ double block_sum_double(double x) {
  __shared__ double buf[kThreads];
  buf[threadIdx.x] = x;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) buf[threadIdx.x] += buf[threadIdx.x + w];
    __syncthreads();
  }
  return buf[0];
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(double* part, const T* x, size_t n) {
  double acc = 0.0;
  for (size_t i = blockIdx.x * size_t(kThreads) + threadIdx.x; i < n;
       i += size_t(kSumBlocks) * kThreads) {
    const double v = to_float(x[i]);
    acc += v * v;
  }
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreads) sum_squares_finish_kernel(double* out,
                                                                      const double* part) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < kSumBlocks; i += kThreads) acc += part[i];
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) *out = total;
}

// ---- launchers ----

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& a) {
  const char* op = "adamw_update";
  check_dtype(param, DType::F32, op, "param");
  check_dtype(grad, DType::F32, op, "grad");
  check_dtype(m, DType::F32, op, "m");
  check_dtype(v, DType::F32, op, "v");
  const size_t n = size_t(param.numel());
  check_numel(grad, int64_t(n), op, "grad");
  check_numel(m, int64_t(n), op, "m");
  check_numel(v, int64_t(n), op, "v");
  if (n == 0) return;
  const AdamWScalars s = adamw_scalars(a);
  const auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; };
  const size_t n4 = aligned(param) && aligned(grad) && aligned(m) && aligned(v) ? n / 4 : 0;
  adamw_kernel<<<grid_for(n4 > 0 ? n4 : n, kThreads), kThreads, 0, stream()>>>(
      param.f32(), grad.f32(), m.f32(), v.f32(), n, n4, s);
  GPT_LAUNCH_CHECK(op, "adamw_kernel");
}

double sum_squares(const Tensor& x) {
  const char* op = "sum_squares";
  check_float(x, op, "x");
  double* part = static_cast<double*>(scratch((kSumBlocks + 1) * sizeof(double), op));
  double* total = part + kSumBlocks;
  const size_t n = size_t(x.numel());
  dispatch_float(x.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sum_squares_partial_kernel<T><<<kSumBlocks, kThreads, 0, stream()>>>(part, x.data<T>(), n);
    GPT_LAUNCH_CHECK(op, "sum_squares_partial_kernel");
  });
  sum_squares_finish_kernel<<<1, kThreads, 0, stream()>>>(total, part);
  GPT_LAUNCH_CHECK(op, "sum_squares_finish_kernel");
  double result = 0.0;
  GPT_CUDA_CHECK(op, cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost,
                                     stream()));
  GPT_CUDA_CHECK(op, cudaStreamSynchronize(stream()));
  resolve_token_checks(op);  // having waited anyway (token_check.cu)
  return result;
}

}  // namespace gpt::cuda
