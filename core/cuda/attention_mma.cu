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
// Backward: deterministic, no atomics, as attention_tc.cu's: a kernel per 64-key tile
// accumulates dK, dV over the query tiles that see it, a kernel per 64-query tile
// accumulates dQ over the key tiles it sees; both recompute P = exp(s - lse) on the
// fragments and feed P^T, dS^T, dS to the next mma from registers; 4 warps of 16 rows,
// the streamed tiles double-buffered by cp.async. Each output element is summed by one
// lane in a fixed order and written to dqkv with one rounding.
//
// Tiles live in shared memory as bf16 rows padded by 8 elements (16 bytes): the 8 row
// addresses of one ldmatrix 8x8 matrix then fall in 8 different 16-byte bank groups.
// The softmax scale is folded into log2 units: exp(x) = exp2(x * log2(e)).
#include <cmath>
#include <cstdint>
#include <string>

#include "core/cuda/cuda_common.cuh"
// The only inline assembly (mma.sync, ldmatrix, cp.async wrappers); the emulator tests
// substitute their own (tests/cuda_emu/cuda_emulator.h).
#include "core/cuda/attention_mma_ptx.cuh"

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

// Backward: 64-row tiles (keys in dK/dV, queries in dQ), 4 warps of 16 rows, scores in
// passes of 32 columns (S and dP for all 64 would be 64 more registers beside dK, dV).
constexpr int kMmaBwdTile = 64;
constexpr int kMmaBwdThreads = 128;
constexpr int kMmaPass = 32;
// dK/dV: K, V, then two Q and two dO buffers, two lse and two D rows of floats.
constexpr size_t mma_backward_dkv_smem(int HS) {
  return 6 * size_t(kMmaBwdTile) * size_t(HS + kMmaPad) * 2 + 4 * size_t(kMmaBwdTile) * 4;
}
// dQ: Q, dO, then two K and two V buffers.
constexpr size_t mma_backward_dq_smem(int HS) {
  return 6 * size_t(kMmaBwdTile) * size_t(HS + kMmaPad) * 2;
}
}  // namespace

// ---- device helpers ----
// Fragment layouts of mma.m16n8k16 and ldmatrix (PTX ISA 8.x, 9.7.14.5.8 and 9.7.14.5.15),
// with g = lane / 4, t = lane % 4 and each 32-bit register holding two bf16 (lower column
// or row index in the low half):
//   A 16x16 (row major): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..),
//                        a[3] = (g+8, 2t+8..)                              (row, col)
//   B 16x8  (col major): b[0] = (2t..2t+1, g), b[1] = (2t+8..2t+9, g)      (k, n)
//   C 16x8 fp32:         c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
//   ldmatrix x4: lanes 8i..8i+7 give the 8 row addresses of matrix i (16 bytes each);
//     r[i] = matrix i's (g, 2t..2t+1), or with .trans its (2t..2t+1, g).

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

// row = acc's row r (0: fragment rows g, 1: g + 8) times factor, for this lane's columns
// 8n + 2t4 and +1 of every n8 tile; row points at column 2t4 (bf16 global memory, 4-byte
// aligned). Rounds once.
template <int NT>
__device__ void store_row(bf16* row, const float (&acc)[NT][4], int r, float factor) {
  uint32_t* dst = reinterpret_cast<uint32_t*>(row);
#pragma unroll
  for (int n = 0; n < NT; ++n)
    dst[4 * n] = pack_bf16(acc[n][2 * r] * factor, acc[n][2 * r + 1] * factor);
}

// Two n8 accumulator tiles (C layout: rows g, g+8 x cols 2t..2t+1) as the A fragment of the
// 16 columns they cover, in bf16: lo gives a[0], a[1], hi gives a[2], a[3]. So P (or dS)
// goes from the score accumulators into the next mma without leaving the registers.
__device__ __forceinline__ void pack_a_fragment(uint32_t (&a)[4], const float (&lo)[4],
                                                const float (&hi)[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);
  a[1] = pack_bf16(lo[2], lo[3]);
  a[2] = pack_bf16(hi[0], hi[1]);
  a[3] = pack_bf16(hi[2], hi[3]);
}

// This lane's ldmatrix x4 row address, as an offset into a bf16 tile of row stride ld, for
// the 16x16 B block at (row0, col0) that mma_b_block reads. Not TRANS: the tile holds B^T,
// rows n and columns k (K's rows for S = Q K^T); matrices (n, k) = (lo, lo), (lo, hi),
// (hi, lo), (hi, hi). TRANS: the tile holds B, rows k and columns n (V's rows for O = P V),
// read transposed; matrices (k, n) = (lo, lo), (hi, lo), (lo, hi), (hi, hi). Either way
// r[0], r[1] are b[0], b[1] of the block's first n8 half and r[2], r[3] those of its second.
template <bool TRANS>
__device__ __forceinline__ int b_block_offset(int row0, int col0, int ld, int lane) {
  const int mi = lane / 8, mr = lane % 8;  // which 8x8 matrix this lane addresses, which row
  if constexpr (TRANS)
    return (row0 + (mi % 2) * 8 + mr) * ld + col0 + (mi / 2) * 8;
  else
    return (row0 + (mi / 2) * 8 + mr) * ld + col0 + (mi % 2) * 8;
}

// d0 += a B0, d1 += a B1 with B0, B1 the two n8 halves of one 16x16 B block, read by one
// ldmatrix x4 (TRANS: .trans) from this lane's row address p (see b_block_offset).
template <bool TRANS>
__device__ __forceinline__ void mma_b_block(float (&d0)[4], float (&d1)[4],
                                            const uint32_t (&a)[4], const bf16* p) {
  uint32_t r[4];
  if constexpr (TRANS)
    ldmatrix_x4_trans(r, p);
  else
    ldmatrix_x4(r, p);
  const uint32_t b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
  mma_m16n8k16_bf16(d0, a, b0);
  mma_m16n8k16_bf16(d1, a, b1);
}

// This lane's ldmatrix x4 row address, as an offset into a tile of row stride ld, for the A
// fragment of warp `warp`'s 16 rows and head dims 16kc + [0, 16): matrices (row, col) =
// (lo, lo), (hi, lo), (lo, hi), (hi, hi) are a[0..3].
__device__ __forceinline__ int a_fragment_offset(int warp, int lane, int kc, int ld) {
  return (warp * 16 + lane % 16) * ld + kc * 16 + (lane / 16) * 8;
}

// The backward's two A operands (this warp's 16 rows of X and Y, per 16 head dims) into
// registers, where HELD covers the head (HS <= 64: see the kernels' kHold).
template <int HELD>
__device__ __forceinline__ void load_a_fragments(uint32_t (&xf)[HELD][4], uint32_t (&yf)[HELD][4],
                                                 const bf16* Xs, const bf16* Ys, int ld, int warp,
                                                 int lane) {
#pragma unroll
  for (int kc = 0; kc < HELD; ++kc) {
    const int off = a_fragment_offset(warp, lane, kc, ld);
    ldmatrix_x4(xf[kc], Xs + off);
    ldmatrix_x4(yf[kc], Ys + off);
  }
}

// One pass of the backward's scores, both kernels: S = X_w U^T and dP = Y_w W^T over the
// NP*16 columns c0 + [0, NP*16) of the streamed tile (dK/dV: X, Y = K, V and U, W = Q, dO,
// so S^T and dP^T; dQ: X, Y = Q, dO and U, W = K, V). X_w, Y_w are this warp's 16 rows, from
// xf, yf when HOLD, else read per 16 head dims from Xs, Ys; B = U^T, W^T are U's and W's
// rows as stored (ld: the tiles' row stride).
template <int HS, int NP, bool HOLD, int HELD>
__device__ __forceinline__ void backward_scores(float (&s)[2 * NP][4], float (&dp)[2 * NP][4],
                                                const uint32_t (&xf)[HELD][4],
                                                const uint32_t (&yf)[HELD][4], const bf16* Xs,
                                                const bf16* Ys, const bf16* Ut, const bf16* Wt,
                                                int c0, int warp, int lane) {
  constexpr int ld = HS + kMmaPad;
#pragma unroll
  for (int n = 0; n < 2 * NP; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
  for (int kc = 0; kc < HS / 16; ++kc) {
    uint32_t ax[4], ay[4];
    if constexpr (HOLD) {
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        ax[x] = xf[kc][x];
        ay[x] = yf[kc][x];
      }
    } else {
      const int off = a_fragment_offset(warp, lane, kc, ld);
      ldmatrix_x4(ax, Xs + off);
      ldmatrix_x4(ay, Ys + off);
    }
#pragma unroll
    for (int np = 0; np < NP; ++np) {
      const int off = b_block_offset<false>(c0 + np * 16, kc * 16, ld, lane);
      mma_b_block<false>(s[2 * np], s[2 * np + 1], ax, Ut + off);
      mma_b_block<false>(dp[2 * np], dp[2 * np + 1], ay, Wt + off);
    }
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
        ldmatrix_x4(qf[kc], Qs + a_fragment_offset(warp, lane, kc, ld));
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
          // Keys np*16 + [0, 16) x head dims kc*16 + [0, 16): score tiles 2np and 2np + 1.
          mma_b_block<false>(s[2 * np], s[2 * np + 1], qf[kc],
                             Kt + b_block_offset<false>(np * 16, kc * 16, ld, lane));
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
        uint32_t pa[4];
        pack_a_fragment(pa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
        for (int dp = 0; dp < HS / 16; ++dp) {
          // Keys kc*16 + [0, 16) x head dims dp*16 + [0, 16): output tiles 2dp and 2dp + 1.
          mma_b_block<true>(o[2 * dp], o[2 * dp + 1], pa,
                            Vt + b_block_offset<true>(kc * 16, dp * 16, ld, lane));
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
      store_row<kOt>(out + (size_t(b) * T + i) * C + size_t(h) * HS + 2 * t4, o, r, inv[r]);
    }
  }
#else
  __trap();
#endif
}

// dK, dV of one 64-key tile over the query tiles that see it. Grid (B * NH, key tiles),
// key tile 0 (the most query tiles) first; 4 warps, warp w owns keys k0 + 16w + [0, 16).
// Per query tile (Q, dO, lse, D double-buffered: the next tile's cp.async overlaps this
// one's math), in passes of 32 queries: S^T = K_w Q^T and dP^T = V_w dO^T on the mma
// fragments, P^T and dS^T in registers, then dV_w += P^T dO and dK_w += dS^T Q with P^T
// and dS^T as A fragments. Every dK, dV element is summed by one lane in a fixed order
// and written to dqkv once (one rounding): deterministic, no atomics.
// ptxas (sm_90, nvcc 13.0), no spills: HS 64 176 registers (2 blocks of 4 warps per SM,
// 55 KiB of shared memory each); HS 128 255 (2 blocks, 103 KiB each).
template <int HS>
__global__ void __launch_bounds__(kMmaBwdThreads)
    attention_backward_dkv_mma_kernel(bf16* dqkv, const bf16* dout, const float* lse,
                                      const float* delta, const bf16* qkv, int T, int C, int NH,
                                      float scale_log2, float scale) {
#ifdef GPT_ATTENTION_MMA_ARCH
  static_assert(HS % 16 == 0 && HS <= 128, "head size: 16-wide mma steps, at most 128");
  constexpr int ld = HS + kMmaPad, kOt = HS / 8;
  // K_w, V_w as A fragments: held in registers for HS <= 64, re-read per pass above
  // (HS 128 would need 64 more registers beside the 128 of dK and dV).
  constexpr bool kHold = HS <= 64;
  constexpr int kHeld = kHold ? HS / 16 : 1;
  // Queries per pass: 16 for HS 128, where 32 (16 more registers) spilled.
  constexpr int kPass = HS <= 64 ? kMmaPass : 16;
  extern __shared__ __align__(128) unsigned char mma_smem[];
  bf16* Ks = reinterpret_cast<bf16*>(mma_smem);
  bf16* Vs = Ks + kMmaBwdTile * ld;
  bf16* Qs = Vs + kMmaBwdTile * ld;    // [2][kMmaBwdTile][ld]
  bf16* dOs = Qs + 2 * kMmaBwdTile * ld;  // [2][kMmaBwdTile][ld]
  float* lse2_s = reinterpret_cast<float*>(dOs + 2 * kMmaBwdTile * ld);  // [2][tile], log2
  float* delta_s = lse2_s + 2 * kMmaBwdTile;                             // [2][tile]

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int k0 = int(blockIdx.y) * kMmaBwdTile;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const bf16* do_base = dout + size_t(b) * T * C + size_t(h) * HS;
  const float* lse_row = lse + (size_t(b) * NH + h) * T;
  const float* delta_row = delta + (size_t(b) * NH + h) * T;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int key_lo = k0 + warp * 16;
  const int j0 = key_lo + g, j1 = j0 + 8;  // this lane's two keys
  const bool warp_active = key_lo < T;     // keys past T need nothing
  // Queries before k0 cannot see these keys; k0 is tile-aligned, so start at its tile.
  const int n_tiles = (T + kMmaBwdTile - 1) / kMmaBwdTile - k0 / kMmaBwdTile;

  // lse (log2 units) and D of query tile q0 into stats buffer sb: plain loads, seen by
  // all after the barrier that follows; zeros past T.
  auto load_stats = [&](int q0, int sb) {
    if (threadIdx.x < kMmaBwdTile) {
      const int t = q0 + int(threadIdx.x);
      lse2_s[sb * kMmaBwdTile + threadIdx.x] = t < T ? lse_row[t] * kMmaLog2e : 0.f;
      delta_s[sb * kMmaBwdTile + threadIdx.x] = t < T ? delta_row[t] : 0.f;
    }
  };
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Ks, q_base + C, C3, k0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Vs, q_base + 2 * C, C3, k0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Qs, q_base, C3, k0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(dOs, do_base, size_t(C), k0, T);
  cp_async_commit();
  load_stats(k0, 0);

  uint32_t kf[kHeld][4], vf[kHeld][4];
  float dk[kOt][4], dv[kOt][4];
#pragma unroll
  for (int n = 0; n < kOt; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  for (int qt = 0; qt < n_tiles; ++qt) {
    const int q0 = k0 + qt * kMmaBwdTile, buf = qt & 1;
    if (qt + 1 < n_tiles) {  // the other buffer was freed by the last step's end barrier
      const int nb = buf ^ 1;
      load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Qs + nb * kMmaBwdTile * ld, q_base, C3,
                                                       q0 + kMmaBwdTile, T);
      load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(dOs + nb * kMmaBwdTile * ld, do_base,
                                                       size_t(C), q0 + kMmaBwdTile, T);
      load_stats(q0 + kMmaBwdTile, nb);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // this step's Q, dO (and K, V) have landed; its stats are stored

    if constexpr (kHold) {
      if (qt == 0 && warp_active) load_a_fragments(kf, vf, Ks, Vs, ld, warp, lane);
    }
    if (warp_active) {
      const bf16* Qt = Qs + buf * kMmaBwdTile * ld;
      const bf16* dOt = dOs + buf * kMmaBwdTile * ld;
      const float* lse2_t = lse2_s + buf * kMmaBwdTile;
      const float* delta_t = delta_s + buf * kMmaBwdTile;
#pragma unroll
      for (int pass = 0; pass < kMmaBwdTile / kPass; ++pass) {
        const int c0 = pass * kPass;  // the pass's first query, in the tile
        if (q0 + c0 + kPass - 1 < key_lo) continue;  // every query before every key
        // Some query of the pass before some key of the warp, or past T.
        const bool mask = q0 + c0 <= key_lo + 15 || q0 + c0 + kPass - 1 >= T;
        // S^T, dP^T (16 keys x kPass queries).
        float s[kPass / 8][4], dp[kPass / 8][4];
        backward_scores<HS, kPass / 16, kHold>(s, dp, kf, vf, Ks, Vs, Qt, dOt, c0, warp, lane);
        // P^T = exp(s - lse_i), dS^T = P^T (dP^T - D_i) scale; element e of tile n is key
        // (e < 2 ? j0 : j1), query q0 + c with c = c0 + 8n + 2t4 + e % 2; 0 unless
        // key <= query < T. (The select, not a product, so inf past the diagonal is gone.)
#pragma unroll
        for (int n = 0; n < kPass / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = c0 + 8 * n + 2 * t4 + e % 2, i = q0 + c, j = e < 2 ? j0 : j1;
            float p = exp2f(s[n][e] * scale_log2 - lse2_t[c]);
            float ds = p * (dp[n][e] - delta_t[c]) * scale;
            if (mask && (j > i || i >= T)) p = ds = 0.f;
            s[n][e] = p;
            dp[n][e] = ds;
          }
        // dV_w += P^T dO, dK_w += dS^T Q over the pass's queries (k), B = dO, Q read
        // transposed.
#pragma unroll
        for (int kc = 0; kc < kPass / 16; ++kc) {
          uint32_t pa[4], da[4];
          pack_a_fragment(pa, s[2 * kc], s[2 * kc + 1]);
          pack_a_fragment(da, dp[2 * kc], dp[2 * kc + 1]);
#pragma unroll
          for (int dpair = 0; dpair < HS / 16; ++dpair) {
            const int off = b_block_offset<true>(c0 + kc * 16, dpair * 16, ld, lane);
            mma_b_block<true>(dv[2 * dpair], dv[2 * dpair + 1], pa, dOt + off);
            mma_b_block<true>(dk[2 * dpair], dk[2 * dpair + 1], da, Qt + off);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

  if (warp_active) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int j = r == 0 ? j0 : j1;
      if (j >= T) continue;
      bf16* dk_row = dqkv + (size_t(b) * T + j) * C3 + C + size_t(h) * HS + 2 * t4;
      store_row<kOt>(dk_row, dk, r, 1.f);
      store_row<kOt>(dk_row + C, dv, r, 1.f);
    }
  }
#else
  __trap();
#endif
}

// dQ of one 64-query tile over the key tiles it sees. Grid (B * NH, query tiles), the last
// query tiles (most keys) first; 4 warps, warp w owns queries q0 + 16w + [0, 16). Per key
// tile (K, V double-buffered by cp.async), in passes of 32 keys: S = Q_w K^T and
// dP = dO_w V^T, dS in registers, dQ_w += dS K with dS as A fragments; written to dqkv
// once, deterministic. ptxas (sm_90, nvcc 13.0), no spills: HS 64 160 registers (3
// blocks of 4 warps per SM, 54 KiB each), HS 128 168 (2 blocks, 102 KiB each).
template <int HS>
__global__ void __launch_bounds__(kMmaBwdThreads)
    attention_backward_dq_mma_kernel(bf16* dqkv, const bf16* dout, const float* lse,
                                     const float* delta, const bf16* qkv, int T, int C, int NH,
                                     float scale_log2, float scale) {
#ifdef GPT_ATTENTION_MMA_ARCH
  static_assert(HS % 16 == 0 && HS <= 128, "head size: 16-wide mma steps, at most 128");
  constexpr int ld = HS + kMmaPad, kOt = HS / 8;
  constexpr bool kHold = HS <= 64;  // Q_w, dO_w A fragments in registers (as in dK/dV)
  constexpr int kHeld = kHold ? HS / 16 : 1;
  extern __shared__ __align__(128) unsigned char mma_smem[];
  bf16* Qs = reinterpret_cast<bf16*>(mma_smem);
  bf16* dOs = Qs + kMmaBwdTile * ld;
  bf16* Ks = dOs + kMmaBwdTile * ld;     // [2][kMmaBwdTile][ld]
  bf16* Vs = Ks + 2 * kMmaBwdTile * ld;  // [2][kMmaBwdTile][ld]

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * kMmaBwdTile;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const bf16* do_base = dout + size_t(b) * T * C + size_t(h) * HS;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int row_lo = q0 + warp * 16, row_hi = row_lo + 15;
  const int i0 = row_lo + g, i1 = i0 + 8;  // this lane's two queries
  const bool warp_active = row_lo < T;
  float lse2[2], dd[2];  // lse (log2 units) and D of rows i0, i1; zeros past T
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = r == 0 ? i0 : i1;
    const size_t at = (size_t(b) * NH + h) * T + i;
    lse2[r] = i < T ? lse[at] * kMmaLog2e : 0.f;
    dd[r] = i < T ? delta[at] : 0.f;
  }
  const int k_end = min(T, q0 + kMmaBwdTile);
  const int n_tiles = (k_end + kMmaBwdTile - 1) / kMmaBwdTile;

  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Qs, q_base, C3, q0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(dOs, do_base, size_t(C), q0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Ks, q_base + C, C3, 0, T);
  load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Vs, q_base + 2 * C, C3, 0, T);
  cp_async_commit();

  uint32_t qf[kHeld][4], of[kHeld][4];
  float dq[kOt][4];
#pragma unroll
  for (int n = 0; n < kOt; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int k0 = kt * kMmaBwdTile, buf = kt & 1;
    if (kt + 1 < n_tiles) {
      const int nb = buf ^ 1;
      load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Ks + nb * kMmaBwdTile * ld, q_base + C,
                                                       C3, k0 + kMmaBwdTile, T);
      load_rows_async<kMmaBwdTile, HS, kMmaBwdThreads>(Vs + nb * kMmaBwdTile * ld,
                                                       q_base + 2 * C, C3, k0 + kMmaBwdTile, T);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    if constexpr (kHold) {
      if (kt == 0 && warp_active) load_a_fragments(qf, of, Qs, dOs, ld, warp, lane);
    }
    if (warp_active && k0 <= row_hi) {
      const bf16* Kt = Ks + buf * kMmaBwdTile * ld;
      const bf16* Vt = Vs + buf * kMmaBwdTile * ld;
#pragma unroll
      for (int pass = 0; pass < kMmaBwdTile / kMmaPass; ++pass) {
        const int c0 = pass * kMmaPass, kp0 = k0 + c0;  // the pass's first key
        if (kp0 > row_hi) continue;                     // every key after every query
        // Some key of the pass after some row (keys past T are after every row < T).
        const bool mask = kp0 + kMmaPass - 1 > row_lo;
        // S, dP (16 queries x kMmaPass keys).
        float s[kMmaPass / 8][4], dp[kMmaPass / 8][4];
        backward_scores<HS, kMmaPass / 16, kHold>(s, dp, qf, of, Qs, dOs, Kt, Vt, c0, warp,
                                                  lane);
        // dS = exp(s - lse_i) (dP - D_i) scale; element e of tile n is row e / 2 (query
        // i0 or i1), key kp0 + 8n + 2t4 + e % 2; 0 past the diagonal (a select: inf there).
#pragma unroll
        for (int n = 0; n < kMmaPass / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int r = e / 2, i = r == 0 ? i0 : i1, j = kp0 + 8 * n + 2 * t4 + e % 2;
            float ds = exp2f(s[n][e] * scale_log2 - lse2[r]) * (dp[n][e] - dd[r]) * scale;
            if (mask && j > i) ds = 0.f;
            dp[n][e] = ds;
          }
        // dQ_w += dS K over the pass's keys (k); B = K read transposed.
#pragma unroll
        for (int kc = 0; kc < kMmaPass / 16; ++kc) {
          uint32_t da[4];
          pack_a_fragment(da, dp[2 * kc], dp[2 * kc + 1]);
#pragma unroll
          for (int dpair = 0; dpair < HS / 16; ++dpair)
            mma_b_block<true>(dq[2 * dpair], dq[2 * dpair + 1], da,
                              Kt + b_block_offset<true>(c0 + kc * 16, dpair * 16, ld, lane));
        }
      }
    }
    __syncthreads();
  }

  if (warp_active) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = r == 0 ? i0 : i1;
      if (i < T)
        store_row<kOt>(dqkv + (size_t(b) * T + i) * C3 + size_t(h) * HS + 2 * t4, dq, r, 1.f);
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

// delta: rowsum(dout * out) as [B, NH, T] (attention.cu computes it). dK/dV first, then
// dQ, on the same stream; together they write all of dqkv.
void attention_backward_mma(bf16* dqkv, const bf16* dout, const float* lse, const float* delta,
                            const bf16* qkv, int B, int T, int C, int NH, int HS) {
  const char* op = "attention_backward";
  const dim3 grid = mma_grid(B, T, NH, kMmaBwdTile, op);
  const float scale = 1.f / std::sqrt(float(HS));
  const float scale_log2 = kMmaLog2e * scale;
  const size_t smem_dkv = mma_backward_dkv_smem(HS), smem_dq = mma_backward_dq_smem(HS);
  auto launch = [&](auto dkv_kernel, auto dq_kernel) {
    allow_mma_smem(dkv_kernel, smem_dkv, op);
    dkv_kernel<<<grid, kMmaBwdThreads, smem_dkv, stream()>>>(dqkv, dout, lse, delta, qkv, T, C,
                                                             NH, scale_log2, scale);
    GPT_LAUNCH_CHECK(op, "attention_backward_dkv_mma_kernel");
    allow_mma_smem(dq_kernel, smem_dq, op);
    dq_kernel<<<grid, kMmaBwdThreads, smem_dq, stream()>>>(dqkv, dout, lse, delta, qkv, T, C, NH,
                                                           scale_log2, scale);
    GPT_LAUNCH_CHECK(op, "attention_backward_dq_mma_kernel");
  };
  if (HS == 64)
    launch(attention_backward_dkv_mma_kernel<64>, attention_backward_dq_mma_kernel<64>);
  else if (HS == 128)
    launch(attention_backward_dkv_mma_kernel<128>, attention_backward_dq_mma_kernel<128>);
  else
    fail(std::string("cuda ") + op + ": the mma kernels take head size 64 or 128, got " +
         std::to_string(HS));
}

}  // namespace gpt::cuda
