// Elementwise ops: residual add, accumulate, scale, GELU (tanh approximation) forward
// and backward. Memory-bound grid-stride loops; math in fp32 whatever the storage type.
#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kThreads = 256;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)

#define GRID_STRIDE(i, n)                                                   \
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < (n); \
       i += size_t(gridDim.x) * blockDim.x)
}  // namespace

// ---- kernels ----

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, size_t n) {
  GRID_STRIDE(i, n) out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

// src may be the other dtype (bf16 activations into f32 gradient buffers).
template <class T>
__global__ void accumulate_kernel(T* dst, AnyFloat src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = from_float<T>(to_float(dst[i]) + src.load(i));
}

template <class T>
__global__ void scale_kernel(T* x, float s, size_t n) {
  GRID_STRIDE(i, n) x[i] = from_float<T>(to_float(x[i]) * s);
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
  GRID_STRIDE(i, n) {
    float v = to_float(inp[i]);
    out[i] = from_float<T>(0.5f * v * (1.f + tanhf(kGeluScale * (v + 0.044715f * v * v * v))));
  }
}

// dinp += dout * gelu'(inp); dinp may alias dout (the usual in-place MLP backward).
template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, size_t n) {
  GRID_STRIDE(i, n) {
    float v = to_float(inp[i]);
    float u = kGeluScale * (v + 0.044715f * v * v * v);
    float t = tanhf(u);
    float sech2 = 1.f - t * t;
    float du = kGeluScale * (1.f + 3.f * 0.044715f * v * v);
    float g = to_float(dout[i]) * (0.5f * (1.f + t) + 0.5f * v * sech2 * du);
    dinp[i] = from_float<T>(to_float(dinp[i]) + g);
  }
}

// ---- launchers ----

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "add";
  check_float(out, op, "out");
  check_dtype(a, out.dtype, op, "a");
  check_dtype(b, out.dtype, op, "b");
  const size_t n = size_t(out.numel());
  check_numel(a, int64_t(n), op, "a");
  check_numel(b, int64_t(n), op, "b");
  if (n == 0) return;
  dispatch_float(out.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out.data<T>(), a.data<T>(),
                                                                     b.data<T>(), n);
    GPT_LAUNCH_CHECK(op, "add_kernel");
  });
}

void accumulate(Tensor& dst, const Tensor& src) {
  const char* op = "accumulate";
  check_float(dst, op, "dst");
  check_float(src, op, "src");
  const size_t n = size_t(dst.numel());
  check_numel(src, int64_t(n), op, "src");
  if (n == 0) return;
  dispatch_float(dst.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    accumulate_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dst.data<T>(),
                                                                            any_float(src), n);
    GPT_LAUNCH_CHECK(op, "accumulate_kernel");
  });
}

void scale(Tensor& x, float s) {
  const char* op = "scale";
  check_float(x, op, "x");
  const size_t n = size_t(x.numel());
  if (n == 0) return;
  dispatch_float(x.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scale_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(x.data<T>(), s, n);
    GPT_LAUNCH_CHECK(op, "scale_kernel");
  });
}

void gelu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "gelu_forward";
  check_float(inp, op, "inp");
  check_dtype(out, inp.dtype, op, "out");
  const size_t n = size_t(inp.numel());
  check_numel(out, int64_t(n), op, "out");
  if (n == 0) return;
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gelu_forward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(out.data<T>(),
                                                                              inp.data<T>(), n);
    GPT_LAUNCH_CHECK(op, "gelu_forward_kernel");
  });
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "gelu_backward";
  check_float(inp, op, "inp");
  check_dtype(dinp, inp.dtype, op, "dinp");
  check_dtype(dout, inp.dtype, op, "dout");
  const size_t n = size_t(inp.numel());
  check_numel(dinp, int64_t(n), op, "dinp");
  check_numel(dout, int64_t(n), op, "dout");
  if (n == 0) return;
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gelu_backward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        dinp.data<T>(), inp.data<T>(), dout.data<T>(), n);
    GPT_LAUNCH_CHECK(op, "gelu_backward_kernel");
  });
}

}  // namespace gpt::cuda
