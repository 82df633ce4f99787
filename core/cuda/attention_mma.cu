// Causal self-attention on bf16 tensor cores through inline PTX (mma.sync m16n8k16,
// ldmatrix, cp.async), FlashAttention-2 style. Unlike attention_tc.cu (nvcuda::wmma, whose
// fragment layouts are opaque), the fragment layouts here are the documented ones, so the
// softmax runs in registers on the accumulator fragments and P goes from the S
// accumulators straight into the A operand of the P V mma (no shared-memory round trip).
// Contract and reference: core/ops.h, core/cpu/attention.cpp; attention.cu dispatches
// here when GPT_ATTENTION=mma (bf16, HS 64 or 128, 16-byte-aligned tensors, sm_80+).
//
// Forward: one block of 8 warps per (128-query tile, head, batch); warp w owns queries
// q0 + 16w + [0, 16) and walks the key tiles of 64 that its rows can see. Why 128 x 64
// with 8 warps: the K/V tiles that every warp reads from shared memory are shared by 128
// queries (half the shared-memory and L2 traffic per query of a 64-query tile), while the
// per-warp state stays small (S: 32 fp32 registers, O: HS/2, Q fragments: HS/4), so HS 128
// fits in registers without spilling; K/V are double-buffered with cp.async so that
// the next tile's copy overlaps this tile's math. Causal masking is applied only on the
// tiles that straddle a warp's diagonal; tiles entirely above it are skipped per warp.
//
// Tiles live in shared memory as bf16 rows padded by 8 elements (16 bytes): the 8 row
// addresses of one ldmatrix 8x8 matrix then fall in 8 different 16-byte bank groups.
// The softmax scale is folded into log2 units: exp(x) = exp2(x * log2(e)).
#include <cmath>
#include <cstdint>
#include <string>

#include "core/cuda/cuda_common.cuh"

// mma.sync with bf16 and ldmatrix need sm_80 or newer; older targets compile to a trap and
// the launchers never choose these kernels there (attention_mma_available()).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GPT_ATTENTION_MMA_ARCH 1
#endif

namespace gpt::cuda {

namespace {
constexpr int kMmaKeys = 64;                      // keys per step of the forward
constexpr int kMmaFwdWarps = 8;                   // each owns 16 query rows
constexpr int kMmaFwdRows = kMmaFwdWarps * 16;    // queries per forward block
constexpr int kMmaFwdThreads = kMmaFwdWarps * 32;
constexpr int kMmaPad = 8;  // bf16 row padding (16 bytes keeps ldmatrix rows aligned)
constexpr float kMmaLog2e = 1.4426950408889634f;
constexpr float kMmaLn2 = 0.6931471805599453f;

// Q tile, then two K and two V buffers.
constexpr size_t mma_forward_smem(int HS) {
  return (size_t(kMmaFwdRows) + 4 * size_t(kMmaKeys)) * size_t(HS + kMmaPad) * 2;
}
}  // namespace

// ---- PTX wrappers ----
// The only inline assembly of this file; tests/cuda_emu/cuda_emulator.h defines
// GPT_CUDA_EMULATOR and provides these five with the same signatures and the documented
// semantics (PTX ISA 8.x, "Warp Level Matrix Multiply-Accumulate Instructions":
// 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type", 9.7.14.5.15
// "ldmatrix"; 9.7.9.25 "cp.async"). Fragment layouts, with g = lane / 4, t = lane % 4
// and each 32-bit register holding two bf16 (lower column or row index in the low half):
//   A 16x16 (row major): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..),
//                        a[3] = (g+8, 2t+8..)                              (row, col)
//   B 16x8  (col major): b[0] = (2t..2t+1, g), b[1] = (2t+8..2t+9, g)      (k, n)
//   C 16x8 fp32:         c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
//   ldmatrix x4: lanes 8i..8i+7 give the 8 row addresses of matrix i (16 bytes each);
//     r[i] = matrix i's (g, 2t..2t+1), or with .trans its (2t..2t+1, g).
#ifndef GPT_CUDA_EMULATOR
#ifdef GPT_ATTENTION_MMA_ARCH
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// d += a b (16x8x16, bf16 in, fp32 accumulate).
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// p: this lane's row address (shared memory, 16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// 16 bytes global -> shared, asynchronously; zeros when !valid (src is not read then).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif
#endif  // GPT_CUDA_EMULATOR

// ---- device helpers ----

#ifdef GPT_ATTENTION_MMA_ARCH
// Two floats as a bf16 pair in one register, `lo` in the low half (the lower index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  union {
    __nv_bfloat162 h;
    uint32_t u;
  } v;
  v.h = __floats2bfloat162_rn(lo, hi);
  return v.u;
}

// Rows [r0, r0 + ROWS) of one head's HS-wide slice (row stride `stride` elements) into
// shared memory (row stride HS + kMmaPad), by cp.async, 16 bytes per copy. Rows at or past
// T are zero-filled (src not read): masked probabilities (0) multiply them.
template <int ROWS, int HS, int THREADS>
__device__ void load_rows_async(bf16* dst, const bf16* src, size_t stride, int r0, int T) {
  constexpr int vecs = HS / 8, ld = HS + kMmaPad;
#pragma unroll
  for (int idx = int(threadIdx.x); idx < ROWS * vecs; idx += THREADS) {
    const int r = idx / vecs, c = (idx % vecs) * 8;
    const int t = r0 + r;
    const bool valid = t < T;
    cp_async_16(dst + r * ld + c, src + (valid ? size_t(t) * stride + c : 0), valid);
  }
}
#endif  // GPT_ATTENTION_MMA_ARCH

// ---- kernels ----

// Grid (B * NH, query tiles of 128); the last query tiles (most keys) run first.
// ptxas (sm_90, nvcc 13.0): HS 64 fits 127 registers without spilling, so two blocks (16
// warps, 2 x 54 KiB of shared memory) share an SM; HS 128 needs 192 (O alone is 64, the Q
// fragments 32, S 32), one block of 8 warps and 102 KiB per SM.
template <int HS>
__global__ void __launch_bounds__(kMmaFwdThreads, HS <= 64 ? 2 : 1)
    attention_forward_mma_kernel(bf16* out, float* lse, const bf16* qkv, int T, int C, int NH,
                                 float scale_log2) {
#ifdef GPT_ATTENTION_MMA_ARCH
  static_assert(HS % 16 == 0 && HS <= 128, "head size: 16-wide mma steps, at most 128");
  constexpr int ld = HS + kMmaPad;
  constexpr int kSt = kMmaKeys / 8;  // n8 score tiles per step
  constexpr int kOt = HS / 8;        // n8 output tiles
  extern __shared__ __align__(128) unsigned char mma_smem[];
  bf16* Qs = reinterpret_cast<bf16*>(mma_smem);
  bf16* Ks = Qs + kMmaFwdRows * ld;  // [2][kMmaKeys][ld]
  bf16* Vs = Ks + 2 * kMmaKeys * ld;

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * kMmaFwdRows;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int mi = lane / 8, mr = lane % 8;  // ldmatrix: which 8x8 matrix, which of its rows
  const int row_lo = q0 + warp * 16, row_hi = row_lo + 15;  // this warp's queries
  const int i0 = row_lo + g, i1 = i0 + 8;                    // this lane's two rows
  // Rows past T need nothing: a warp whose rows all lie there skips the math.
  const bool warp_active = row_lo < T;
  const int k_end = min(T, q0 + kMmaFwdRows);  // keys [0, k_end) are seen by some row here
  const int n_tiles = (k_end + kMmaKeys - 1) / kMmaKeys;

  load_rows_async<kMmaFwdRows, HS, kMmaFwdThreads>(Qs, q_base, C3, q0, T);
  load_rows_async<kMmaKeys, HS, kMmaFwdThreads>(Ks, q_base + C, C3, 0, T);
  load_rows_async<kMmaKeys, HS, kMmaFwdThreads>(Vs, q_base + 2 * C, C3, 0, T);
  cp_async_commit();

  uint32_t qf[HS / 16][4];  // this warp's Q rows as A fragments, per 16 head dims
  float o[kOt][4];
#pragma unroll
  for (int n = 0; n < kOt; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  // Running max (log2 units) and this lane's share of the running sum, rows i0 and i1.
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int k0 = kt * kMmaKeys, buf = kt & 1;
    // The next tile into the other buffer (read by the step before last: the barrier at
    // the end of that step made it free), while this one is computed. Every step commits
    // a group, possibly empty, so that wait<1> always means "this step's tile is in".
    if (kt + 1 < n_tiles) {
      const int nb = buf ^ 1;
      load_rows_async<kMmaKeys, HS, kMmaFwdThreads>(Ks + nb * kMmaKeys * ld, q_base + C, C3,
                                                    k0 + kMmaKeys, T);
      load_rows_async<kMmaKeys, HS, kMmaFwdThreads>(Vs + nb * kMmaKeys * ld, q_base + 2 * C,
                                                    C3, k0 + kMmaKeys, T);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // every thread's copies of this tile (and of Q) have landed

    if (kt == 0 && warp_active) {
#pragma unroll
      for (int kc = 0; kc < HS / 16; ++kc)
        ldmatrix_x4(qf[kc], Qs + (warp * 16 + lane % 16) * ld + kc * 16 + (lane / 16) * 8);
    }
    // Keys k0 > row_hi are masked for all 16 rows: skip the tile (warp-uniform).
    if (warp_active && k0 <= row_hi) {
      const bf16* Kt = Ks + buf * kMmaKeys * ld;
      const bf16* Vt = Vs + buf * kMmaKeys * ld;
      // Keys of 16-wide chunks past row_hi are masked for every row of this warp.
      const bool diagonal = k0 + kMmaKeys - 1 > row_lo;

      // S = Q K^T (16 x 64): B = K^T, whose col-major fragments are K's rows as stored.
      float s[kSt][4];
#pragma unroll
      for (int n = 0; n < kSt; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int kc = 0; kc < HS / 16; ++kc) {
#pragma unroll
        for (int np = 0; np < kSt / 2; ++np) {
          if (k0 + np * 16 > row_hi) continue;
          // Matrices: keys np*16 + [0,8) | [8,16) x head dims kc*16 + [0,8) | [8,16):
          // r[0], r[1] are b[0], b[1] of score tile 2np; r[2], r[3] those of 2np + 1.
          uint32_t r[4];
          ldmatrix_x4(r, Kt + (np * 16 + (mi / 2) * 8 + mr) * ld + kc * 16 + (mi % 2) * 8);
          const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
          mma_m16n8k16_bf16(s[2 * np], qf[kc], b0);
          mma_m16n8k16_bf16(s[2 * np + 1], qf[kc], b1);
        }
      }

      // Online softmax on the fragments: element e of tile n is row (e < 2 ? i0 : i1),
      // key k0 + 8n + 2t4 + e % 2; a row's 64 keys lie in the 4 lanes of a quad.
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < kSt; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = k0 + 8 * n + 2 * t4 + e % 2, i = e < 2 ? i0 : i1;
          float v = s[n][e] * scale_log2;
          if (diagonal && j > i) v = -INFINITY;
          s[n][e] = v;
          tile_max[e / 2] = fmaxf(tile_max[e / 2], v);
        }
      float corr[2], base[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float m_new = fmaxf(m[r], tile_max[r]);
        // Key k0 <= row_lo is visible to every row here, so m_new is finite; the guard
        // only keeps exp2(-inf - -inf) = NaN out if that ever changed.
        base[r] = m_new == -INFINITY ? 0.f : m_new;
        corr[r] = exp2f(m[r] - base[r]);  // 0 on the first tile (m = -inf)
        m[r] = m_new;
        l[r] *= corr[r];
      }
#pragma unroll
      for (int n = 0; n < kSt; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = exp2f(s[n][e] - base[e / 2]);  // 0 where masked
          s[n][e] = p;
          l[e / 2] += p;
        }
#pragma unroll
      for (int n = 0; n < kOt; ++n) {
        o[n][0] *= corr[0];
        o[n][1] *= corr[0];
        o[n][2] *= corr[1];
        o[n][3] *= corr[1];
      }

      // O += P V. P's A fragment for keys 16kc + [0, 16) is score tiles 2kc and 2kc + 1
      // (C layout rows g, g+8 x cols 2t..2t+1 = A's a[0], a[1] and a[2], a[3]). B = V
      // (k = key, n = head dim) is V's rows read transposed.
#pragma unroll
      for (int kc = 0; kc < kMmaKeys / 16; ++kc) {
        if (k0 + kc * 16 > row_hi) continue;
        const uint32_t pa[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]),
                                pack_bf16(s[2 * kc][2], s[2 * kc][3]),
                                pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
        for (int dp = 0; dp < HS / 16; ++dp) {
          // Matrices: keys kc*16 + [0,8) | [8,16) x head dims dp*16 + [0,8) | [8,16):
          // r[0], r[1] are b[0], b[1] of output tile 2dp; r[2], r[3] those of 2dp + 1.
          uint32_t r[4];
          ldmatrix_x4_trans(r, Vt + (kc * 16 + (mi % 2) * 8 + mr) * ld + dp * 16 + (mi / 2) * 8);
          const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
          mma_m16n8k16_bf16(o[2 * dp], pa, b0);
          mma_m16n8k16_bf16(o[2 * dp + 1], pa, b1);
        }
      }
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

  if (warp_active) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    const float inv[2] = {1.f / l[0], 1.f / l[1]};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = r == 0 ? i0 : i1;
      if (i >= T) continue;
      if (t4 == 0) lse[(size_t(b) * NH + h) * T + i] = m[r] * kMmaLn2 + logf(l[r]);
      uint32_t* o_row = reinterpret_cast<uint32_t*>(out + (size_t(b) * T + i) * C +
                                                    size_t(h) * HS + 2 * t4);
#pragma unroll
      for (int n = 0; n < kOt; ++n)
        o_row[4 * n] = pack_bf16(o[n][2 * r] * inv[r], o[n][2 * r + 1] * inv[r]);
    }
  }
#else
  __trap();
#endif
}

// ---- launchers ----

namespace {

// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <class Kernel> void allow_mma_smem(Kernel kernel, size_t bytes, const char* op) {
  if (bytes > 48 * 1024)
    GPT_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(bytes)));
}

dim3 mma_grid(int B, int T, int NH, int rows, const char* op) {
  const int64_t tiles = (int64_t(T) + rows - 1) / rows;
  if (tiles > 65535 || int64_t(B) * NH > INT32_MAX)
    fail(std::string("cuda ") + op + ": sequence length " + std::to_string(T) + " with " +
         std::to_string(int64_t(B) * NH) + " (batch, head) pairs exceeds the launch grid");
  return dim3(unsigned(B * NH), unsigned(tiles));
}

}  // namespace

bool attention_mma_supports(int HS) { return HS == 64 || HS == 128; }

bool attention_mma_available() {
  // Per process: bf16 mma.sync and ldmatrix need compute capability 8.0 or newer.
  static const bool ok = [] {
    int dev = 0, major = 0;
    GPT_CUDA_CHECK("attention", cudaGetDevice(&dev));
    GPT_CUDA_CHECK("attention",
                   cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major >= 8;
  }();
  return ok;
}

void attention_forward_mma(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                           int HS) {
  const char* op = "attention_forward";
  const dim3 grid = mma_grid(B, T, NH, kMmaFwdRows, op);
  const float scale_log2 = kMmaLog2e / std::sqrt(float(HS));
  const size_t smem = mma_forward_smem(HS);
  auto launch = [&](auto kernel) {
    allow_mma_smem(kernel, smem, op);
    kernel<<<grid, kMmaFwdThreads, smem, stream()>>>(out, lse, qkv, T, C, NH, scale_log2);
    GPT_LAUNCH_CHECK(op, "attention_forward_mma_kernel");
  };
  if (HS == 64)
    launch(attention_forward_mma_kernel<64>);
  else if (HS == 128)
    launch(attention_forward_mma_kernel<128>);
  else
    fail(std::string("cuda ") + op + ": the mma kernels take head size 64 or 128, got " +
         std::to_string(HS));
}

}  // namespace gpt::cuda
