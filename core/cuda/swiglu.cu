// SwiGLU on the fused gate/up projection: inp[N, 2F] = (gate | up), out[N, F] =
// silu(gate) * up (layout: core/ops.h, swiglu_forward), and its backward into dinp
// [N, 2F] (overwritten). Memory-bound grid-stride loops over the N x F outputs, math in
// fp32 in the CPU's order (core/cpu/swiglu.cpp).
#include <string>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kSwigluThreads = 256;
}  // namespace

// ---- kernels ----

template <class T>
__global__ void swiglu_forward_kernel(T* out, const T* inp, size_t n, int F) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t gate = (i / F) * 2 * F + i % F;
    const float g = to_float(inp[gate]);
    out[i] = from_float<T>(g / (1.f + expf(-g)) * to_float(inp[gate + F]));
  }
}

// dgate = dout * up * silu'(gate), silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g)));
// dup = dout * silu(gate).
template <class T>
__global__ void swiglu_backward_kernel(T* dinp, const T* inp, const T* dout, size_t n, int F) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t gate = (i / F) * 2 * F + i % F;
    const float g = to_float(inp[gate]), up = to_float(inp[gate + F]), dy = to_float(dout[i]);
    const float sig = 1.f / (1.f + expf(-g));
    dinp[gate] = from_float<T>(dy * up * sig * (1.f + g * (1.f - sig)));
    dinp[gate + F] = from_float<T>(dy * g * sig);
  }
}

// ---- launchers ----

namespace {
// F from the [N, F] tensor; the [N, 2F] one must match.
int64_t swiglu_hidden(const Tensor& wide, const Tensor& half, const char* op) {
  const int64_t F = half.dim(-1);
  if (wide.dim(-1) != 2 * F || wide.numel() != 2 * half.numel())
    fail(std::string("cuda ") + op + ": inp " + shape_str(wide.shape) +
         " is not [N, 2F] for [N, F] = " + shape_str(half.shape));
  return F;
}
}  // namespace

void swiglu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "swiglu_forward";
  check_float(inp, op, "inp");
  check_dtype(out, inp.dtype, op, "out");
  const int64_t F = swiglu_hidden(inp, out, op);
  const size_t n = size_t(out.numel());
  if (n == 0) return;
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_forward_kernel<T><<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream()>>>(
        out.data<T>(), inp.data<T>(), n, int(F));
    GPT_LAUNCH_CHECK(op, "swiglu_forward_kernel");
  });
}

void swiglu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "swiglu_backward";
  check_float(inp, op, "inp");
  check_dtype(dinp, inp.dtype, op, "dinp");
  check_dtype(dout, inp.dtype, op, "dout");
  const int64_t F = swiglu_hidden(inp, dout, op);
  check_numel(dinp, inp.numel(), op, "dinp");
  const size_t n = size_t(dout.numel());
  if (n == 0) return;
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu_backward_kernel<T><<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream()>>>(
        dinp.data<T>(), inp.data<T>(), dout.data<T>(), n, int(F));
    GPT_LAUNCH_CHECK(op, "swiglu_backward_kernel");
  });
}

}  // namespace gpt::cuda
