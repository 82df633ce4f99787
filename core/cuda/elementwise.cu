// Elementwise ops: residual add, accumulate, scale, dtype conversion, GELU (tanh
// approximation) forward and backward. Memory-bound grid-stride loops; math in fp32
// whatever the storage type.
#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kThreads = 256;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
// Elements per thread in convert: 16 bytes of bf16 (one 128-bit access), 32 of f32.
constexpr int kConvertVec = 8;

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

// bf16 is handled as its raw 16 bits here. The rounding is core/bf16.h's integer
// round-to-nearest-even rather than __float2bfloat16_rn: they agree on every finite
// value and infinity, but the intrinsic turns every NaN into the canonical 0x7fff,
// while bf16.h keeps sign and payload; the integer form gives the CPU op's bits exactly.
template <class D, class S> __device__ __forceinline__ D convert_one(S x);
template <> __device__ __forceinline__ uint16_t convert_one<uint16_t, float>(float x) {
  uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
template <> __device__ __forceinline__ float convert_one<float, uint16_t>(uint16_t h) {
  return __uint_as_float(uint32_t(h) << 16);
}

template <class T> struct alignas(sizeof(T) * kConvertVec) ConvertPack { T v[kConvertVec]; };

// n / kConvertVec whole packs through wide loads and stores; the last n % kConvertVec
// elements by the first threads of block 0. Both pointers must be pack-aligned.
template <class D, class S>
__global__ void convert_vec_kernel(D* dst, const S* src, size_t n) {
  const size_t packs = n / kConvertVec;
  GRID_STRIDE(i, packs) {
    ConvertPack<S> in = reinterpret_cast<const ConvertPack<S>*>(src)[i];
    ConvertPack<D> out;
#pragma unroll
    for (int k = 0; k < kConvertVec; ++k) out.v[k] = convert_one<D, S>(in.v[k]);
    reinterpret_cast<ConvertPack<D>*>(dst)[i] = out;
  }
  const size_t tail = packs * kConvertVec + threadIdx.x;
  if (blockIdx.x == 0 && tail < n) dst[tail] = convert_one<D, S>(src[tail]);
}

// Views at any element offset (a slice of a flat parameter buffer) take this path.
template <class D, class S>
__global__ void convert_scalar_kernel(D* dst, const S* src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = convert_one<D, S>(src[i]);
}

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
  GRID_STRIDE(i, n) {
    float v = to_float(inp[i]);
    out[i] = from_float<T>(0.5f * v * (1.f + tanhf(kGeluScale * (v + 0.044715f * v * v * v))));
  }
}

// dinp = dout * gelu'(inp). Each element is read before it is written, so dinp may
// alias dout.
template <class T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, size_t n) {
  GRID_STRIDE(i, n) {
    float v = to_float(inp[i]);
    float u = kGeluScale * (v + 0.044715f * v * v * v);
    float t = tanhf(u);
    float sech2 = 1.f - t * t;
    float du = kGeluScale * (1.f + 3.f * 0.044715f * v * v);
    float g = to_float(dout[i]) * (0.5f * (1.f + t) + 0.5f * v * sech2 * du);
    dinp[i] = from_float<T>(g);
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

namespace {
template <class D, class S>
void launch_convert(D* dst, const S* src, size_t n, const char* op) {
  auto aligned = [](const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (aligned(dst, sizeof(ConvertPack<D>)) && aligned(src, sizeof(ConvertPack<S>))) {
    // At least one block, so block 0 exists to write the tail when n < kConvertVec.
    convert_vec_kernel<D, S><<<grid_for(n / kConvertVec, kThreads), kThreads, 0, stream()>>>(
        dst, src, n);
    GPT_LAUNCH_CHECK(op, "convert_vec_kernel");
  } else {
    convert_scalar_kernel<D, S><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(dst, src, n);
    GPT_LAUNCH_CHECK(op, "convert_scalar_kernel");
  }
}
}  // namespace

void convert(Tensor& dst, const Tensor& src) {
  const char* op = "convert";
  check_float(dst, op, "dst");
  check_float(src, op, "src");
  const size_t n = size_t(src.numel());
  check_numel(dst, int64_t(n), op, "dst");
  if (n == 0) return;
  if (dst.dtype == src.dtype) {
    if (dst.raw() != src.raw())
      GPT_CUDA_CHECK(op, cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(),
                                         cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  if (dst.dtype == DType::BF16)
    launch_convert(dst.data<uint16_t>(), src.data<float>(), n, op);
  else
    launch_convert(dst.data<float>(), src.data<uint16_t>(), n, op);
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
