// Causal self-attention, flash style: tiles of 32 queries x 32 keys in shared memory,
// online softmax in fp32, never a T x T matrix in global memory. Grouped-query heads
// (NKV kv heads, each serving NH / NKV query heads; multi-head when NKV = NH) are read by
// index from the packed qkv row [q heads | k heads | v heads] (QkvLayout). The forward saves the
// per-row log-sum-exp lse[B, NH, T] of the scaled scores (the ops.h contract), from
// which the backward rebuilds each probability as exp(s - lse).
//
// Work layout (one 4-warp block per (32-row tile, head, batch)): each warp owns 8 rows
// of the tile, and lane j of the warp handles key (or query) j of the other tile, so a
// score is a per-lane dot product over the head dimension from shared memory (row
// stride padded to an odd number of floats: lanes reading different rows hit different
// banks), and the P.V style updates broadcast p_j with a shuffle while each lane owns
// head dims lane, lane+32, ... (NS slots, so HS <= 32 * NS <= 128).
//
// The backward is deterministic, no atomics: one kernel per (key tile, kv head)
// accumulates dK and dV over the query heads of the kv head's group and the query tiles
// that can see it; a second, per query tile and query head, accumulates dQ over the key
// tiles it sees (recomputing the scores, flash-attention-2 style). Every gradient
// element is summed by one thread in a fixed order.
//
// All math is fp32 on CUDA cores; bf16 tensors are converted on load. These kernels are
// exact (fp32 matches the CPU to 1e-5) and take any head size up to 128. bf16 activations
// with a head size that is a multiple of 16 go to the tensor-core kernels instead
// (attention_tc.cu), unless GPT_ATTENTION=simple asks for these. GPT_ATTENTION=mma
// sends bf16 with head size 64 or 128 to the inline-PTX mma.sync kernels
// (attention_mma.cu). The wmma kernels stay the default until the mma ones have been
// run and measured on a GPU (they were written and emulator-tested without one). The
// tensor-core kernels read the multi-head layout only: grouped-query attention
// (NKV < NH) takes these kernels whatever the dtype.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <type_traits>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kTile = 32;  // rows per block and keys (or queries) per step: one per lane
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kTile / kWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxHeadSize = 128;
}  // namespace

// ---- kernels ----

// Columns of the packed qkv row: NH query heads, then NKV key heads, then NKV value
// heads, HS each; query head h reads kv head h / (NH / NKV). out rows are NH HS wide.
struct QkvLayout {
  int NH, NKV, HS;
  __host__ __device__ size_t row() const { return size_t(NH + 2 * NKV) * HS; }
  __host__ __device__ size_t out_row() const { return size_t(NH) * HS; }
  __host__ __device__ int group() const { return NH / NKV; }
  __host__ __device__ size_t q_col(int h) const { return size_t(h) * HS; }
  __host__ __device__ size_t k_col(int kvh) const { return size_t(NH + kvh) * HS; }
  __host__ __device__ size_t v_col(int kvh) const { return size_t(NH + NKV + kvh) * HS; }
};

// Rows [r0, r0 + kTile) of one head's slice (HS wide) into shared memory as fp32, row
// stride ld; rows at or past T are zero. Consecutive threads read consecutive dims.
template <class T>
__device__ void load_tile(float* dst, int ld, const T* src, size_t row_stride, int r0, int T_,
                          int HS) {
  for (int idx = threadIdx.x; idx < kTile * HS; idx += kThreads) {
    const int r = idx / HS, d = idx % HS;
    const int t = r0 + r;
    dst[r * ld + d] = t < T_ ? to_float(src[size_t(t) * row_stride + d]) : 0.f;
  }
}

__device__ __forceinline__ float dot_shared(const float* a, const float* b, int n) {
  float acc = 0.f;
  for (int d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// acc[sl] += sum over jj < n of w_jj * rows[jj * ld + lane + 32 sl], w_jj being lane jj's w
// (broadcast by shuffle; all 32 lanes take part): the P V style update of one row, each
// lane owning head dims lane + 32 sl below HS.
template <int NS>
__device__ __forceinline__ void accumulate_rows(float (&acc)[NS], float w, const float* rows,
                                                int ld, int n, int HS, int lane) {
  for (int jj = 0; jj < n; ++jj) {
    const float wj = __shfl_sync(0xffffffffu, w, jj);
#pragma unroll
    for (int sl = 0; sl < NS; ++sl) {
      const int d = lane + 32 * sl;
      if (d < HS) acc[sl] += wj * rows[jj * ld + d];
    }
  }
}

// dst[d] = acc * factor for the head dims d = lane + 32 sl < HS this lane owns.
template <class T, int NS>
__device__ __forceinline__ void store_head_row(T* dst, const float (&acc)[NS], float factor,
                                               int HS, int lane) {
#pragma unroll
  for (int sl = 0; sl < NS; ++sl) {
    const int d = lane + 32 * sl;
    if (d < HS) dst[d] = from_float<T>(acc[sl] * factor);
  }
}

template <class T, int NS>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(T* out, float* lse, const T* qkv, int T_, QkvLayout L,
                             float scale) {
  const int NH = L.NH, HS = L.HS;
  extern __shared__ float smem[];
  const int ld = HS | 1;
  float* Qs = smem;
  float* Ks = Qs + kTile * ld;
  float* Vs = Ks + kTile * ld;
  // Heaviest tiles (most keys) first: they set the kernel's tail.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const size_t W = L.row();
  const T* row0 = qkv + size_t(b) * T_ * W;
  const T* q_base = row0 + L.q_col(h);
  const T* k_base = row0 + L.k_col(h / L.group());
  const T* v_base = row0 + L.v_col(h / L.group());
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(Qs, ld, q_base, W, q0, T_, HS);

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][NS];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int s = 0; s < NS; ++s) acc[r][s] = 0.f;
  }
  const int last = min(T_, q0 + kTile);  // keys [0, last) are visible to some row here
  for (int k0 = 0; k0 < last; k0 += kTile) {
    __syncthreads();  // previous K/V tile consumed (and Q loaded)
    load_tile(Ks, ld, k_base, W, k0, T_, HS);
    load_tile(Vs, ld, v_base, W, k0, T_, HS);
    __syncthreads();
    const int j = k0 + lane;
    const int nk = min(kTile, T_ - k0);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      const int i = q0 + row;
      if (i >= T_ || k0 > i) continue;  // warp-uniform
      const float s = j <= i ? dot_shared(Qs + row * ld, Ks + lane * ld, HS) * scale : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(s));  // finite: key k0 <= i is visible
      const float p = expf(s - m_new);               // 0 where masked
      const float corr = expf(m[r] - m_new);         // 0 on the first tile
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int sl = 0; sl < NS; ++sl) acc[r][sl] *= corr;
      const int jmax = min(nk, i - k0 + 1);  // keys of this tile visible to row i
      accumulate_rows(acc[r], p, Vs, ld, jmax, HS, lane);
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    if (i >= T_) continue;
    const float inv = 1.f / l[r];  // here, not in the call: that order changes the SASS
    store_head_row(out + (size_t(b) * T_ + i) * L.out_row() + size_t(h) * HS, acc[r], inv, HS,
                   lane);
    if (lane == 0) lse[(size_t(b) * NH + h) * T_ + i] = m[r] + logf(l[r]);
  }
}

// delta[b, h, t] = sum_d dout * out over the head: the softmax-backward row term.
// One warp per (b, t, h).
template <class T>
__global__ void attention_backward_delta_kernel(float* delta, const T* dout, const T* out, int B,
                                                int T_, int C, int NH, int HS) {
  const size_t w = (blockIdx.x * size_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= size_t(B) * T_ * NH) return;
  const int h = int(w % NH);
  const size_t bt = w / NH;
  const size_t off = bt * C + size_t(h) * HS;
  float acc = 0.f;
  for (int d = lane; d < HS; d += 32) acc += to_float(dout[off + d]) * to_float(out[off + d]);
  acc = warp_sum(acc);
  const size_t b = bt / T_, t = bt % T_;
  if (lane == 0) delta[(b * NH + h) * T_ + t] = acc;
}

// dK, dV for one tile of keys of one kv head, summed over the query heads of its group;
// lane = query within each query tile.
template <class T, int NS>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_kernel(T* dqkv, const T* dout, const float* lse, const float* delta,
                                  const T* qkv, int T_, QkvLayout L, float scale) {
  const int NH = L.NH, HS = L.HS;
  extern __shared__ float smem[];
  const int ld = HS | 1;
  float* Ks = smem;
  float* Vs = Ks + kTile * ld;
  float* Qs = Vs + kTile * ld;
  float* dOs = Qs + kTile * ld;
  float* lse_s = dOs + kTile * ld;
  float* delta_s = lse_s + kTile;
  const int k0 = blockIdx.x * kTile, kvh = blockIdx.y, b = blockIdx.z;
  const size_t W = L.row();
  const T* row0 = qkv + size_t(b) * T_ * W;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(Ks, ld, row0 + L.k_col(kvh), W, k0, T_, HS);
  load_tile(Vs, ld, row0 + L.v_col(kvh), W, k0, T_, HS);

  float dk[kRowsPerWarp][NS], dv[kRowsPerWarp][NS];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int s = 0; s < NS; ++s) dk[r][s] = dv[r][s] = 0.f;

  // The group's query heads one after another: their sums land in the same dk, dv.
  for (int h = kvh * L.group(); h < (kvh + 1) * L.group(); ++h) {
    const T* q_base = row0 + L.q_col(h);
    const T* do_base = dout + size_t(b) * T_ * L.out_row() + size_t(h) * HS;
    const float* lse_row = lse + (size_t(b) * NH + h) * T_;
    const float* delta_row = delta + (size_t(b) * NH + h) * T_;
    // Queries before k0 cannot see these keys; k0 is tile-aligned, so start at its tile.
    for (int q0 = k0; q0 < T_; q0 += kTile) {
      __syncthreads();
      load_tile(Qs, ld, q_base, W, q0, T_, HS);
      load_tile(dOs, ld, do_base, L.out_row(), q0, T_, HS);
      if (threadIdx.x < kTile) {
        const int t = q0 + threadIdx.x;
        lse_s[threadIdx.x] = t < T_ ? lse_row[t] : 0.f;
        delta_s[threadIdx.x] = t < T_ ? delta_row[t] : 0.f;
      }
      __syncthreads();
      const int i = q0 + lane;
      const int nq = min(kTile, T_ - q0);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = warp * kRowsPerWarp + r;
        const int key = k0 + row;
        if (key >= T_) continue;  // warp-uniform
        float p = 0.f, ds = 0.f;
        if (i < T_ && key <= i) {
          const float s = dot_shared(Qs + lane * ld, Ks + row * ld, HS) * scale;
          const float dp = dot_shared(dOs + lane * ld, Vs + row * ld, HS);
          p = expf(s - lse_s[lane]);
          ds = p * (dp - delta_s[lane]) * scale;
        }
        // Queries of this tile before the key see nothing of it (p = ds = 0): skip them.
        for (int ii = max(0, key - q0); ii < nq; ++ii) {
          const float pi = __shfl_sync(0xffffffffu, p, ii);
          const float dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
          for (int sl = 0; sl < NS; ++sl) {
            const int d = lane + 32 * sl;
            if (d < HS) {
              dv[r][sl] += pi * dOs[ii * ld + d];
              dk[r][sl] += dsi * Qs[ii * ld + d];
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int key = k0 + warp * kRowsPerWarp + r;
    if (key >= T_) continue;
    T* dk_out = dqkv + (size_t(b) * T_ + key) * W + L.k_col(kvh);
    T* dv_out = dqkv + (size_t(b) * T_ + key) * W + L.v_col(kvh);
#pragma unroll
    for (int sl = 0; sl < NS; ++sl) {
      const int d = lane + 32 * sl;
      if (d < HS) {
        dk_out[d] = from_float<T>(dk[r][sl]);
        dv_out[d] = from_float<T>(dv[r][sl]);
      }
    }
  }
}

// dQ for one tile of queries; lane = key within each key tile.
template <class T, int NS>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(T* dqkv, const T* dout, const float* lse, const float* delta,
                                 const T* qkv, int T_, QkvLayout L, float scale) {
  const int NH = L.NH, HS = L.HS;
  extern __shared__ float smem[];
  const int ld = HS | 1;
  float* Qs = smem;
  float* dOs = Qs + kTile * ld;
  float* Ks = dOs + kTile * ld;
  float* Vs = Ks + kTile * ld;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const size_t W = L.row();
  const T* row0 = qkv + size_t(b) * T_ * W;
  const T* q_base = row0 + L.q_col(h);
  const T* k_base = row0 + L.k_col(h / L.group());
  const T* v_base = row0 + L.v_col(h / L.group());
  const T* do_base = dout + size_t(b) * T_ * L.out_row() + size_t(h) * HS;
  const float* lse_row = lse + (size_t(b) * NH + h) * T_;
  const float* delta_row = delta + (size_t(b) * NH + h) * T_;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile(Qs, ld, q_base, W, q0, T_, HS);
  load_tile(dOs, ld, do_base, L.out_row(), q0, T_, HS);

  float dq[kRowsPerWarp][NS], lse_r[kRowsPerWarp], delta_r[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    lse_r[r] = i < T_ ? lse_row[i] : 0.f;
    delta_r[r] = i < T_ ? delta_row[i] : 0.f;
#pragma unroll
    for (int s = 0; s < NS; ++s) dq[r][s] = 0.f;
  }
  const int last = min(T_, q0 + kTile);
  for (int k0 = 0; k0 < last; k0 += kTile) {
    __syncthreads();
    load_tile(Ks, ld, k_base, W, k0, T_, HS);
    load_tile(Vs, ld, v_base, W, k0, T_, HS);
    __syncthreads();
    const int j = k0 + lane;
    const int nk = min(kTile, T_ - k0);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      const int i = q0 + row;
      if (i >= T_ || k0 > i) continue;  // warp-uniform
      float ds = 0.f;
      if (j <= i) {
        const float s = dot_shared(Qs + row * ld, Ks + lane * ld, HS) * scale;
        const float dp = dot_shared(dOs + row * ld, Vs + lane * ld, HS);
        ds = expf(s - lse_r[r]) * (dp - delta_r[r]) * scale;
      }
      accumulate_rows(dq[r], ds, Ks, ld, min(nk, i - k0 + 1), HS, lane);
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    if (i >= T_) continue;
    store_head_row(dqkv + (size_t(b) * T_ + i) * W + L.q_col(h), dq[r], 1.f, HS, lane);
  }
}

// Calls f(std::integral_constant<int, NS>) with the fewest head-dim slots per lane (the
// kernels' NS); here, before the launchers, so the emulator tests choose as they do.
template <class F> void dispatch_slots(int64_t HS, F&& f) {
  if (HS <= 32)
    f(std::integral_constant<int, 1>{});
  else if (HS <= 64)
    f(std::integral_constant<int, 2>{});
  else
    f(std::integral_constant<int, 4>{});
}

// ---- launchers ----

namespace {

// C = NH HS is the width of out (and of q); qkv rows are (NH + 2 NKV) HS wide.
struct Dims {
  int64_t B, T, C, NH, NKV, HS;
  QkvLayout layout() const { return {int(NH), int(NKV), int(HS)}; }
};

Dims check_qkv(const Tensor& qkv, int NH, int NKV, const char* op) {
  check_float(qkv, op, "qkv");
  if (NH <= 0 || NKV <= 0 || NH % NKV != 0)
    fail(std::string("cuda ") + op + ": " + std::to_string(NKV) +
         " kv heads do not divide " + std::to_string(NH) + " query heads");
  const int64_t heads = int64_t(NH) + 2 * int64_t(NKV);
  if (qkv.ndim() != 3 || qkv.dim(2) % heads != 0)
    fail(std::string("cuda ") + op + ": qkv must be [B, T, (NH + 2 NKV) HS] (NH " +
         std::to_string(NH) + ", NKV " + std::to_string(NKV) + "), got " + shape_str(qkv.shape));
  Dims d{qkv.dim(0), qkv.dim(1), 0, NH, NKV, qkv.dim(2) / heads};
  d.C = d.NH * d.HS;
  if (d.HS > kMaxHeadSize)
    fail(std::string("cuda ") + op + ": head size " + std::to_string(d.HS) +
         " exceeds the supported maximum " + std::to_string(kMaxHeadSize));
  return d;
}


// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <class Kernel> void allow_smem(Kernel kernel, size_t bytes, const char* op) {
  if (bytes > 48 * 1024)
    GPT_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(bytes)));
}

// Which kernels bf16 attention takes: `automatic` the wmma tensor-core kernels where they
// apply; `simple` these fp32 ones (a baseline for the tensor-core paths); `mma` the
// inline-PTX kernels where they apply, else as automatic. GPT_ATTENTION=auto|simple|mma,
// read once, on first use.
enum class AttentionKernels { automatic, simple, mma };
AttentionKernels& attention_kernels() {
  static AttentionKernels kernels = [] {
    const char* v = std::getenv("GPT_ATTENTION");
    const std::string mode = v ? v : "";
    if (mode != "" && mode != "auto" && mode != "simple" && mode != "mma")
      fail("GPT_ATTENTION must be 'simple', 'mma' or 'auto' (or unset), got '" + mode + "'");
    return mode == "simple" ? AttentionKernels::simple
           : mode == "mma"  ? AttentionKernels::mma
                            : AttentionKernels::automatic;
  }();
  return kernels;
}
bool simple_forced() { return attention_kernels() == AttentionKernels::simple; }

// The tensor-core kernels take bf16, head sizes in 16-wide mma tiles up to 128, and
// tensors they can move 16 bytes at a time, in the multi-head layout only (NKV = NH).
bool use_tensor_cores(const Dims& d, DType dt, std::initializer_list<const void*> tensors) {
  if (dt != DType::BF16 || d.HS % 16 != 0 || d.HS > 128 || simple_forced()) return false;
  if (d.NKV != d.NH) return false;
  for (const void* p : tensors)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return attention_tc_available();
}

// The mma kernels: asked for (GPT_ATTENTION=mma), and where the wmma ones apply, for the
// head sizes they are instantiated for.
bool use_mma(const Dims& d, DType dt, std::initializer_list<const void*> tensors) {
  return attention_kernels() == AttentionKernels::mma && attention_mma_supports(int(d.HS)) &&
         use_tensor_cores(d, dt, tensors) && attention_mma_available();
}

}  // namespace

bool set_attention_kernel_for_tests(bool simple) {
  const bool previous = simple_forced();
  attention_kernels() = simple ? AttentionKernels::simple : AttentionKernels::automatic;
  return previous;
}

bool set_attention_mma_for_tests(bool mma) {
  const bool previous = attention_kernels() == AttentionKernels::mma;
  attention_kernels() = mma ? AttentionKernels::mma : AttentionKernels::automatic;
  return previous;
}

void attention_gqa_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV) {
  const char* op = "attention_forward";
  const Dims d = check_qkv(qkv, NH, NKV, op);
  check_dtype(out, qkv.dtype, op, "out");
  check_dtype(lse, DType::F32, op, "lse");
  check_numel(out, d.B * d.T * d.C, op, "out");
  check_numel(lse, d.B * d.NH * d.T, op, "lse");
  if (d.B * d.T == 0) return;
  if (use_mma(d, qkv.dtype, {out.raw(), qkv.raw()})) {
    attention_forward_mma(out.data<bf16>(), lse.f32(), qkv.data<bf16>(), int(d.B), int(d.T),
                          int(d.C), int(d.NH), int(d.HS));
    return;
  }
  if (use_tensor_cores(d, qkv.dtype, {out.raw(), qkv.raw()})) {
    attention_forward_tc(out.data<bf16>(), lse.f32(), qkv.data<bf16>(), int(d.B), int(d.T),
                         int(d.C), int(d.NH), int(d.HS));
    return;
  }
  const float scale = 1.f / std::sqrt(float(d.HS));
  const dim3 grid(unsigned((d.T + kTile - 1) / kTile), unsigned(d.NH), unsigned(d.B));
  const size_t smem = 3 * size_t(kTile) * size_t(d.HS | 1) * sizeof(float);
  dispatch_float(qkv.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_slots(d.HS, [&](auto slots) {
      constexpr int NS = decltype(slots)::value;
      allow_smem(attention_forward_kernel<T, NS>, smem, op);
      attention_forward_kernel<T, NS><<<grid, kThreads, smem, stream()>>>(
          out.data<T>(), lse.f32(), qkv.data<T>(), int(d.T), d.layout(), scale);
      GPT_LAUNCH_CHECK(op, "attention_forward_kernel");
    });
  });
}

void attention_gqa_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out,
                            const Tensor& lse, const Tensor& qkv, int NH, int NKV) {
  const char* op = "attention_backward";
  const Dims d = check_qkv(qkv, NH, NKV, op);
  check_dtype(dqkv, qkv.dtype, op, "dqkv");
  check_dtype(dout, qkv.dtype, op, "dout");
  check_dtype(out, qkv.dtype, op, "out");
  check_dtype(lse, DType::F32, op, "lse");
  check_numel(dqkv, qkv.numel(), op, "dqkv");
  check_numel(dout, d.B * d.T * d.C, op, "dout");
  check_numel(out, d.B * d.T * d.C, op, "out");
  check_numel(lse, d.B * d.NH * d.T, op, "lse");
  if (d.B * d.T == 0) return;
  const float scale = 1.f / std::sqrt(float(d.HS));
  const size_t rows = size_t(d.B * d.T * d.NH);
  float* delta = static_cast<float*>(scratch(rows * sizeof(float), op));
  const dim3 grid(unsigned((d.T + kTile - 1) / kTile), unsigned(d.NH), unsigned(d.B));
  const dim3 grid_kv(unsigned((d.T + kTile - 1) / kTile), unsigned(d.NKV), unsigned(d.B));
  const size_t tile_bytes = size_t(kTile) * size_t(d.HS | 1) * sizeof(float);
  const size_t smem_dkv = 4 * tile_bytes + 2 * kTile * sizeof(float);
  const size_t smem_dq = 4 * tile_bytes;
  const bool tensor_cores = use_tensor_cores(d, qkv.dtype, {dqkv.raw(), dout.raw(), qkv.raw()});
  const bool mma = use_mma(d, qkv.dtype, {dqkv.raw(), dout.raw(), qkv.raw()});
  dispatch_float(qkv.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    attention_backward_delta_kernel<T><<<grid_for(rows * 32, 256, rows * 32), 256, 0, stream()>>>(
        delta, dout.data<T>(), out.data<T>(), int(d.B), int(d.T), int(d.C), int(d.NH),
        int(d.HS));
    GPT_LAUNCH_CHECK(op, "attention_backward_delta_kernel");
    if constexpr (std::is_same_v<T, bf16>) {
      if (mma) {
        attention_backward_mma(dqkv.data<bf16>(), dout.data<bf16>(), lse.f32(), delta,
                               qkv.data<bf16>(), int(d.B), int(d.T), int(d.C), int(d.NH),
                               int(d.HS));
        return;
      }
      if (tensor_cores) {
        attention_backward_tc(dqkv.data<bf16>(), dout.data<bf16>(), lse.f32(), delta,
                              qkv.data<bf16>(), int(d.B), int(d.T), int(d.C), int(d.NH),
                              int(d.HS));
        return;
      }
    }
    dispatch_slots(d.HS, [&](auto slots) {
      constexpr int NS = decltype(slots)::value;
      allow_smem(attention_backward_dkv_kernel<T, NS>, smem_dkv, op);
      attention_backward_dkv_kernel<T, NS><<<grid_kv, kThreads, smem_dkv, stream()>>>(
          dqkv.data<T>(), dout.data<T>(), lse.f32(), delta, qkv.data<T>(), int(d.T), d.layout(),
          scale);
      GPT_LAUNCH_CHECK(op, "attention_backward_dkv_kernel");
      allow_smem(attention_backward_dq_kernel<T, NS>, smem_dq, op);
      attention_backward_dq_kernel<T, NS><<<grid, kThreads, smem_dq, stream()>>>(
          dqkv.data<T>(), dout.data<T>(), lse.f32(), delta, qkv.data<T>(), int(d.T), d.layout(),
          scale);
      GPT_LAUNCH_CHECK(op, "attention_backward_dq_kernel");
    });
  });
}

void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH) {
  attention_gqa_forward(out, lse, qkv, NH, NH);
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH) {
  attention_gqa_backward(dqkv, dout, out, lse, qkv, NH, NH);
}

}  // namespace gpt::cuda
