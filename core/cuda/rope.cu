// Rotary position embedding of the q and k heads in packed qkv [B, T, (NH + 2 NKV) HS]
// (layout and pairing convention: core/ops.h, rope_forward); backward rotates by the
// opposite angle. One thread per (row, pair i): it computes the pair's cos and sin once,
// in double as the CPU does (fp32 pos * freq loses ~1e-4 rad at position 2^13), and
// applies them to every q and k head of the row; consecutive threads take consecutive
// pairs, so each head's reads and writes are coalesced. Memory-bound.
#include <string>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kRopeThreads = 256;
}  // namespace

// ---- kernels ----

// sign +1 forward, -1 backward. out may alias inp (each pair is read whole before it is
// written, by one thread); copy_v: out is another buffer, so v is copied.
template <class T>
__global__ void rope_kernel(T* out, const T* inp, int N, int T_, int heads_rotated, int W,
                            int HS, float theta, long long pos_offset, float sign,
                            bool copy_v) {
  const int half = HS / 2;
  const size_t total = size_t(N) * half;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total;
       idx += size_t(gridDim.x) * blockDim.x) {
    const int n = int(idx / half), i = int(idx % half);
    const double inv_freq = pow(double(theta), -double(2 * i) / double(HS));
    const double angle = double(pos_offset + n % T_) * inv_freq;
    const float c = float(cos(angle)), s = sign * float(sin(angle));
    const size_t row = size_t(n) * W;
    for (int h = 0; h < heads_rotated; ++h) {
      const size_t p = row + size_t(h) * HS + i;
      const float x1 = to_float(inp[p]), x2 = to_float(inp[p + half]);
      out[p] = from_float<T>(x1 * c - x2 * s);
      out[p + half] = from_float<T>(x2 * c + x1 * s);
    }
    if (copy_v)
      for (size_t p = row + size_t(heads_rotated) * HS + i; p < row + W; p += HS) {
        out[p] = inp[p];
        out[p + half] = inp[p + half];
      }
  }
}

// ---- launchers ----

namespace {
void rope_launch(Tensor& out, const Tensor& inp, const RopeArgs& r, float sign, const char* op) {
  check_float(inp, op, "qkv");
  check_dtype(out, inp.dtype, op, "out");
  check_numel(out, inp.numel(), op, "out");
  const int64_t heads = int64_t(r.n_head) + 2 * int64_t(r.n_kv_head);
  if (inp.ndim() != 3 || r.n_kv_head <= 0 || r.n_head % r.n_kv_head != 0 ||
      inp.dim(2) % heads != 0)
    fail(std::string("cuda ") + op + ": qkv " + shape_str(inp.shape) +
         " is not [B, T, (NH + 2 NKV) HS] for NH " + std::to_string(r.n_head) + ", NKV " +
         std::to_string(r.n_kv_head));
  const int64_t T_ = inp.dim(1), W = inp.dim(2), HS = W / heads, N = inp.dim(0) * T_;
  if (HS % 2 != 0)
    fail(std::string("cuda ") + op + ": head size " + std::to_string(HS) +
         " is odd; rotary embedding rotates pairs of dimensions");
  if (N == 0 || HS == 0) return;
  const size_t threads = size_t(N) * size_t(HS / 2);
  dispatch_float(inp.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    rope_kernel<T><<<grid_for(threads, kRopeThreads), kRopeThreads, 0, stream()>>>(
        out.data<T>(), inp.data<T>(), int(N), int(T_), r.n_head + r.n_kv_head, int(W), int(HS),
        r.theta, static_cast<long long>(r.pos_offset), sign, out.raw() != inp.raw());
    GPT_LAUNCH_CHECK(op, "rope_kernel");
  });
}
}  // namespace

void rope_forward(Tensor& out, const Tensor& qkv, const RopeArgs& args) {
  rope_launch(out, qkv, args, 1.f, "rope_forward");
}

void rope_backward(Tensor& dqkv, const Tensor& dout, const RopeArgs& args) {
  rope_launch(dqkv, dout, args, -1.f, "rope_backward");
}

}  // namespace gpt::cuda
