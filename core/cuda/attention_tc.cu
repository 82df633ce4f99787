// Causal self-attention on bf16 tensor cores (nvcuda::wmma, 16x16x16 bf16 tiles with fp32
// accumulation), flash-attention-2 style: forward per (64-query tile, head, batch) with an
// online softmax in fp32; backward deterministic, without atomics, in two kernels: one per
// 64-key tile accumulating dK and dV over the query tiles that see it, one per 64-query
// tile accumulating dQ over the key tiles it sees, both recomputing P = exp(s - lse).
// Contract and reference: core/ops.h, core/cpu/attention.cpp; attention.cu dispatches
// here for bf16 activations with HS a multiple of 16 up to 128 (else its fp32 kernels).
//
// Work layout: 4 warps per block, each owning 16 rows of the block's 64-row tile (queries
// in the forward and dQ kernels, keys in the dK/dV kernel), against 64 columns (keys, or
// queries) per step. Tiles live in shared memory as bf16, rows padded by 8 elements so
// that consecutive rows start in different banks; wmma pointers are then always 32-byte
// aligned (16-row and 16-column steps of a row stride that is a multiple of 8).
//
// WMMA accumulator layouts are unspecified, so element-wise work goes one of two ways:
//  * forward: scores go through shared memory (store_matrix_sync), where a lane pair owns
//    a row for the softmax; the running output is rescaled in registers by looking each
//    element's row up (see accumulator_coords);
//  * backward: P and dS are element-wise in the scores (given each element's row and
//    column), so they are computed in registers and written as bf16 straight into the
//    shared tile that the next mma reads.
// The softmax scale is folded into log2 units: exp(x) = exp2(x * log2(e)).
#include <mma.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "core/cuda/cuda_common.cuh"

// bf16 wmma needs sm_80 or newer. Builds for older targets compile the kernels to a trap;
// the launchers never choose them there (attention_tc_available()).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GPT_ATTENTION_TC_ARCH 1
#endif

namespace gpt::cuda {

namespace {
constexpr int kTile = 64;  // rows per block, and columns per step (keys or queries)
constexpr int kWarps = 4;  // each warp owns 16 of the block's rows
constexpr int kThreads = kWarps * 32;
constexpr int kPad = 8;          // bf16 row padding of head-dim tiles
constexpr int kLdS = kTile + 4;  // fp32 score rows (wmma: multiple of 4)
constexpr int kLdP = kTile + 8;  // bf16 probability rows (multiple of 8)
constexpr float kLog2e = 1.4426950408889634f;

// Shared-memory bytes of the pieces (each a multiple of 32 bytes, so every piece starts
// 32-byte aligned when carved in sequence from the aligned base).
constexpr size_t head_tile_bytes(int HS) { return size_t(kTile) * (HS + kPad) * 2; }
constexpr size_t score_tile_bytes() { return size_t(kTile) * kLdS * 4; }
constexpr size_t prob_tile_bytes() { return size_t(kTile) * kLdP * 2; }
constexpr size_t row_floats_bytes() { return size_t(kTile) * 4; }
static_assert(score_tile_bytes() % 32 == 0 && prob_tile_bytes() % 32 == 0, "alignment");

size_t forward_smem(int HS) {  // Q, K, V, S, P, per-row rescale factors
  return 3 * head_tile_bytes(HS) + score_tile_bytes() + prob_tile_bytes() + row_floats_bytes();
}
size_t backward_dkv_smem(int HS) {  // K, V, Q, dO, P^T, dS^T, lse, D
  return 4 * head_tile_bytes(HS) + 2 * prob_tile_bytes() + 2 * row_floats_bytes();
}
size_t backward_dq_smem(int HS) {  // Q, dO, K, V, dS, lse, D
  return 4 * head_tile_bytes(HS) + prob_tile_bytes() + 2 * row_floats_bytes();
}
}  // namespace

// ---- device helpers ----

#ifdef GPT_ATTENTION_TC_ARCH
constexpr int kFrag = 16;                 // wmma tile edge
constexpr int kColFrags = kTile / kFrag;  // 16-wide column tiles per step
// The backward computes its scores in passes of 2 column tiles (32 columns): S and dP
// for all 64 at once would hold 64 more registers beside the dK, dV or dQ accumulators.
constexpr int kPassFrags = 2;
constexpr float kLn2 = 0.6931471805599453f;
namespace wmma = nvcuda::wmma;
using AccFrag = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;
using AFrag = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using BRowFrag = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
// B = X^T for X stored by rows (K or Q or dO or V): column-major view of the same rows.
using BColFrag = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::col_major>;
constexpr int kAccElems = AccFrag::num_elements;

// Where each of this lane's accumulator elements sits in its 16x16 tile, as row * 16 +
// col. The layout is unspecified but fixed per fragment type (mma_sync adds C to A*B
// element by element, however C was loaded), so loading a matrix whose entries are their
// own positions reveals it. scratch: 256 floats of this warp's own, 32-byte aligned.
__device__ void accumulator_coords(float* scratch, int (&coord)[kAccElems]) {
  const int lane = threadIdx.x % 32;
  __syncwarp();
  for (int idx = lane; idx < kFrag * kFrag; idx += 32) scratch[idx] = float(idx);
  __syncwarp();
  AccFrag f;
  wmma::load_matrix_sync(f, scratch, kFrag, wmma::mem_row_major);
#pragma unroll
  for (int e = 0; e < kAccElems; ++e) coord[e] = int(f.x[e]);
  __syncwarp();  // the caller may reuse scratch
}

// Rows [r0, r0 + kTile) of one head's HS-wide slice (row stride `stride` elements) into
// shared memory with row stride ld, 16 bytes (8 bf16) per access. Rows at or past T are
// zeros: masked probabilities (0) multiply them, and 0 * uninitialised could be NaN.
__device__ void load_rows(bf16* dst, int ld, const bf16* src, size_t stride, int r0, int T,
                          int HS) {
  const int vecs = HS / 8;
  for (int idx = threadIdx.x; idx < kTile * vecs; idx += kThreads) {
    const int r = idx / vecs, c = (idx - r * vecs) * 8;
    const int t = r0 + r;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (t < T) v = *reinterpret_cast<const uint4*>(src + size_t(t) * stride + c);
    *reinterpret_cast<uint4*>(dst + size_t(r) * ld + c) = v;
  }
}

// lse (in log2 units) and D of rows [r0, r0 + kTile) into shared memory; zeros past T.
__device__ void load_row_stats(float* lse2_s, float* delta_s, const float* lse_row,
                               const float* delta_row, int r0, int T) {
  if (threadIdx.x < kTile) {
    const int t = r0 + int(threadIdx.x);
    lse2_s[threadIdx.x] = t < T ? lse_row[t] * kLog2e : 0.f;
    delta_s[threadIdx.x] = t < T ? delta_row[t] : 0.f;
  }
}

union Bf16x8 {
  uint4 u;
  __nv_bfloat162 h[4];
};

// Writes one 16x16 accumulator tile times `factor` into bf16 global memory (one
// rounding). The tile goes through the warp's staging area (stage: 256 floats, 32-byte
// aligned); then lane pair (2r, 2r+1) handles row r,
// columns (lane % 2) * 8 + [0, 8): dst points at this lane's 8 elements, or is null for a
// row past T.
__device__ void store_tile(float* stage, const AccFrag& f, bf16* dst, float factor) {
  const int lane = threadIdx.x % 32;
  __syncwarp();  // earlier readers of stage are done
  wmma::store_matrix_sync(stage, f, kFrag, wmma::mem_row_major);
  __syncwarp();
  if (dst == nullptr) return;
  const float4* src = reinterpret_cast<const float4*>(stage + (lane / 2) * kFrag + (lane % 2) * 8);
  const float4 lo = src[0], hi = src[1];
  float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] *= factor;
  uint4* out = reinterpret_cast<uint4*>(dst);
  Bf16x8 pack;
#pragma unroll
  for (int k = 0; k < 4; ++k) pack.h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
  *out = pack.u;
}

// acc += A B over one 64-column step: A is this warp's 16 x kTile probabilities or score
// gradients in bf16 (row stride kLdP), B the step's kTile rows of a head tile (V, or K for
// dQ; row stride ld), nt 16-wide head-dim tiles of them.
template <int KT>
__device__ __forceinline__ void mma_step_rows(AccFrag (&acc)[KT], const bf16* A_w, const bf16* Bs,
                                              int ld, int nt) {
#pragma unroll
  for (int kk = 0; kk < kColFrags; ++kk) {
    AFrag a;
    wmma::load_matrix_sync(a, A_w + kk * kFrag, kLdP);
#pragma unroll
    for (int n = 0; n < KT; ++n) {
      if (n < nt) {
        BRowFrag b;
        wmma::load_matrix_sync(b, Bs + size_t(kk * kFrag) * ld + n * kFrag, ld);
        wmma::mma_sync(acc[n], a, b, acc[n]);
      }
    }
  }
}

// One pass of the backward's scores, both kernels: S = X_w U^T and dP = Y_w W^T for the 16
// rows row0 + [0, 16) of X, Y (this warp's) against the kPassFrags * 16 columns of the
// streamed tile from column tile `pass` on (dK/dV: X, Y = K, V and U, W = Q, dO, so S^T and
// dP^T; dQ: X, Y = Q, dO and U, W = K, V). B = U^T, W^T: U's and W's rows as stored.
__device__ __forceinline__ void backward_scores(AccFrag (&s)[kPassFrags], AccFrag (&dp)[kPassFrags],
                                                const bf16* Xs, const bf16* Ys, const bf16* Us,
                                                const bf16* Ws, int ld, int nt, int row0,
                                                int pass) {
#pragma unroll
  for (int f = 0; f < kPassFrags; ++f) {
    wmma::fill_fragment(s[f], 0.f);
    wmma::fill_fragment(dp[f], 0.f);
  }
  for (int k = 0; k < nt; ++k) {
    AFrag ax, ay;
    wmma::load_matrix_sync(ax, Xs + size_t(row0) * ld + k * kFrag, ld);
    wmma::load_matrix_sync(ay, Ys + size_t(row0) * ld + k * kFrag, ld);
#pragma unroll
    for (int f = 0; f < kPassFrags; ++f) {
      const size_t off = size_t((pass + f) * kFrag) * ld + k * kFrag;
      BColFrag bt;
      wmma::load_matrix_sync(bt, Us + off, ld);
      wmma::mma_sync(s[f], ax, bt, s[f]);
      wmma::load_matrix_sync(bt, Ws + off, ld);
      wmma::mma_sync(dp[f], ay, bt, dp[f]);
    }
  }
}
#endif  // GPT_ATTENTION_TC_ARCH

// ---- kernels ----

// Grid (B * NH, query tiles); the last query tiles (most keys) run first: they set the tail.
template <int KT>  // KT: 16-wide head-dim tiles the registers hold, >= HS / 16
__global__ void __launch_bounds__(kThreads)
    attention_forward_tc_kernel(bf16* out, float* lse, const bf16* qkv, int T, int C, int NH,
                                int HS, float scale_log2) {
#ifdef GPT_ATTENTION_TC_ARCH
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const int ld = HS + kPad;
  bf16* Qs = reinterpret_cast<bf16*>(tc_smem);
  bf16* Ks = Qs + size_t(kTile) * ld;
  bf16* Vs = Ks + size_t(kTile) * ld;
  float* Ss = reinterpret_cast<float*>(Vs + size_t(kTile) * ld);
  bf16* Ps = reinterpret_cast<bf16*>(Ss + kTile * kLdS);
  float* corr_s = reinterpret_cast<float*>(Ps + kTile * kLdP);

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * kTile;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nt = HS / kFrag;
  float* S_w = Ss + warp * kFrag * kLdS;  // this warp's 16 score rows (also its staging)
  bf16* P_w = Ps + warp * kFrag * kLdP;
  int coord[kAccElems];
  accumulator_coords(S_w, coord);
  load_rows(Qs, ld, q_base, C3, q0, T, HS);

  AccFrag o[KT];
#pragma unroll
  for (int n = 0; n < KT; ++n) wmma::fill_fragment(o[n], 0.f);
  // Softmax split: lane pair (2r, 2r+1) owns the warp's row r; the lane of parity `half`
  // takes the columns of that parity. Both lanes keep the same running max m; each keeps
  // the sum l of its own columns (one rescale factor per row, so the halves add up).
  const int row = warp * kFrag + lane / 2;  // in the block's tile
  const int half = lane % 2;
  const int i = q0 + row;
  float m = -INFINITY, l = 0.f;

  const int k_end = min(T, q0 + kTile);  // keys [0, k_end) are visible to some row here
  for (int k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();  // every warp is done with the previous K, V (and Q is loaded)
    load_rows(Ks, ld, q_base + C, C3, k0, T, HS);
    load_rows(Vs, ld, q_base + 2 * C, C3, k0, T, HS);
    __syncthreads();

    {  // S = Q_w K^T: 16 x 64 scores of this warp, to shared memory
      AccFrag s[kColFrags];
#pragma unroll
      for (int n = 0; n < kColFrags; ++n) wmma::fill_fragment(s[n], 0.f);
      for (int k = 0; k < nt; ++k) {
        AFrag a;
        wmma::load_matrix_sync(a, Qs + size_t(warp * kFrag) * ld + k * kFrag, ld);
#pragma unroll
        for (int n = 0; n < kColFrags; ++n) {
          BColFrag bk;
          wmma::load_matrix_sync(bk, Ks + size_t(n * kFrag) * ld + k * kFrag, ld);
          wmma::mma_sync(s[n], a, bk, s[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kColFrags; ++n)
        wmma::store_matrix_sync(S_w + n * kFrag, s[n], kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row i over this tile's keys j = k0 + c, visible when j <= i
    // (rows past T see keys before T only: finite, and never written out).
    const float* s_row = S_w + (lane / 2) * kLdS;
    float sv[kTile / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kTile / 2; ++jj) {
      const int c = 2 * jj + half, j = k0 + c;
      sv[jj] = (j <= i && j < T) ? s_row[c] * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, sv[jj]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);
    // Key k0 <= i is visible to every row of every tile visited, so m_new is finite; the
    // guard only keeps exp2(-inf - -inf) = NaN out if that ever changed.
    const float m_base = m_new == -INFINITY ? 0.f : m_new;
    const float corr = exp2f(m - m_base);  // 0 on the first tile (m = -inf)
    float p_sum = 0.f;
    bf16* p_row = P_w + (lane / 2) * kLdP;
#pragma unroll
    for (int jj = 0; jj < kTile / 2; ++jj) {
      const float p = exp2f(sv[jj] - m_base);  // 0 where masked
      p_sum += p;
      p_row[2 * jj + half] = __float2bfloat16_rn(p);
    }
    l = l * corr + p_sum;
    m = m_new;
    if (half == 0) corr_s[row] = corr;
    __syncwarp();

    // O = corr * O + P V, each output element rescaled by its own row's factor.
    float corr_e[kAccElems];
#pragma unroll
    for (int e = 0; e < kAccElems; ++e) corr_e[e] = corr_s[warp * kFrag + coord[e] / kFrag];
#pragma unroll
    for (int n = 0; n < KT; ++n)
#pragma unroll
      for (int e = 0; e < kAccElems; ++e) o[n].x[e] *= corr_e[e];
    mma_step_rows(o, P_w, Vs, ld, nt);
  }

  const float l_row = l + __shfl_xor_sync(0xffffffffu, l, 1);
  if (half == 0 && i < T) lse[(size_t(b) * NH + h) * T + i] = m * kLn2 + logf(l_row);
  const float inv_l = 1.f / l_row;
  bf16* o_row = i < T ? out + (size_t(b) * T + i) * C + size_t(h) * HS + half * 8 : nullptr;
#pragma unroll
  for (int n = 0; n < KT; ++n)
    if (n < nt) store_tile(S_w, o[n], o_row ? o_row + n * kFrag : nullptr, inv_l);
#else
  __trap();
#endif
}

// dK, dV of one 64-key tile over the query tiles that see it. Grid (B * NH, key tiles),
// key tile 0 (the most query tiles) first. Warp w owns keys k0 + 16w + [0, 16).
template <int KT>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_tc_kernel(bf16* dqkv, const bf16* dout, const float* lse,
                                     const float* delta, const bf16* qkv, int T, int C, int NH,
                                     int HS, float scale_log2, float scale) {
#ifdef GPT_ATTENTION_TC_ARCH
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const int ld = HS + kPad;
  bf16* Ks = reinterpret_cast<bf16*>(tc_smem);
  bf16* Vs = Ks + size_t(kTile) * ld;
  bf16* Qs = Vs + size_t(kTile) * ld;
  bf16* dOs = Qs + size_t(kTile) * ld;
  bf16* Pt = dOs + size_t(kTile) * ld;  // P^T: rows keys, columns queries
  bf16* dSt = Pt + kTile * kLdP;
  float* lse2_s = reinterpret_cast<float*>(dSt + kTile * kLdP);
  float* delta_s = lse2_s + kTile;

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int k0 = int(blockIdx.y) * kTile;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const bf16* do_base = dout + size_t(b) * T * C + size_t(h) * HS;
  const float* lse_row = lse + (size_t(b) * NH + h) * T;
  const float* delta_row = delta + (size_t(b) * NH + h) * T;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nt = HS / kFrag;
  bf16* Pt_w = Pt + warp * kFrag * kLdP;
  bf16* dSt_w = dSt + warp * kFrag * kLdP;
  float* stage = reinterpret_cast<float*>(Pt_w);  // 2304 bytes, 256 floats needed
  int coord[kAccElems];
  accumulator_coords(stage, coord);
  load_rows(Ks, ld, q_base + C, C3, k0, T, HS);
  load_rows(Vs, ld, q_base + 2 * C, C3, k0, T, HS);

  AccFrag dk[KT], dv[KT];
#pragma unroll
  for (int n = 0; n < KT; ++n) {
    wmma::fill_fragment(dk[n], 0.f);
    wmma::fill_fragment(dv[n], 0.f);
  }
  const int key0 = k0 + warp * kFrag;  // this warp's first key
  // Queries before k0 cannot see these keys; k0 is tile-aligned, so start at its tile.
  for (int q0 = k0; q0 < T; q0 += kTile) {
    __syncthreads();  // every warp is done with the previous Q, dO, lse, D
    load_rows(Qs, ld, q_base, C3, q0, T, HS);
    load_rows(dOs, ld, do_base, size_t(C), q0, T, HS);
    load_row_stats(lse2_s, delta_s, lse_row, delta_row, q0, T);
    __syncthreads();

    for (int pass = 0; pass < kColFrags; pass += kPassFrags) {
      // S^T = K_w Q^T and dP^T = V_w dO^T for query columns [pass, pass + kPassFrags) * 16.
      AccFrag s[kPassFrags], dp[kPassFrags];
      backward_scores(s, dp, Ks, Vs, Qs, dOs, ld, nt, warp * kFrag, pass);
      // P = exp(s - lse_i) and dS = P (dP - D_i) scale where key j <= query i < T, else 0.
#pragma unroll
      for (int f = 0; f < kPassFrags; ++f) {
#pragma unroll
        for (int e = 0; e < kAccElems; ++e) {
          const int r = coord[e] / kFrag, c = (pass + f) * kFrag + coord[e] % kFrag;
          const int i = q0 + c, j = key0 + r;
          float p = 0.f, ds = 0.f;
          if (i < T && j <= i) {
            p = exp2f(s[f].x[e] * scale_log2 - lse2_s[c]);
            ds = p * (dp[f].x[e] - delta_s[c]) * scale;
          }
          Pt_w[r * kLdP + c] = __float2bfloat16_rn(p);
          dSt_w[r * kLdP + c] = __float2bfloat16_rn(ds);
        }
      }
    }
    __syncwarp();

    // dV_w += P^T dO, dK_w += dS^T Q over this tile's 64 queries.
#pragma unroll
    for (int kk = 0; kk < kColFrags; ++kk) {
      AFrag ap, ads;
      wmma::load_matrix_sync(ap, Pt_w + kk * kFrag, kLdP);
      wmma::load_matrix_sync(ads, dSt_w + kk * kFrag, kLdP);
#pragma unroll
      for (int n = 0; n < KT; ++n) {
        if (n < nt) {
          const size_t off = size_t(kk * kFrag) * ld + n * kFrag;
          BRowFrag br;
          wmma::load_matrix_sync(br, dOs + off, ld);
          wmma::mma_sync(dv[n], ap, br, dv[n]);
          wmma::load_matrix_sync(br, Qs + off, ld);
          wmma::mma_sync(dk[n], ads, br, dk[n]);
        }
      }
    }
  }

  // dK, dV of key row key0 + lane / 2 into dqkv; the stage is this warp's P^T rows.
  const int key = key0 + lane / 2;
  bf16* dk_row =
      key < T ? dqkv + (size_t(b) * T + key) * C3 + C + size_t(h) * HS + (lane % 2) * 8 : nullptr;
#pragma unroll
  for (int n = 0; n < KT; ++n) {
    if (n < nt) {
      store_tile(stage, dk[n], dk_row ? dk_row + n * kFrag : nullptr, 1.f);
      store_tile(stage, dv[n], dk_row ? dk_row + C + n * kFrag : nullptr, 1.f);
    }
  }
#else
  __trap();
#endif
}

// dQ of one 64-query tile over the key tiles it sees. Grid (B * NH, query tiles), the last
// query tiles (most keys) first. Warp w owns queries q0 + 16w + [0, 16).
template <int KT>  // 4 blocks per SM (128 registers) fit without spilling up to KT = 4
__global__ void __launch_bounds__(kThreads, KT >= 8 ? 2 : 4)
    attention_backward_dq_tc_kernel(bf16* dqkv, const bf16* dout, const float* lse,
                                    const float* delta, const bf16* qkv, int T, int C, int NH,
                                    int HS, float scale_log2, float scale) {
#ifdef GPT_ATTENTION_TC_ARCH
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const int ld = HS + kPad;
  bf16* Qs = reinterpret_cast<bf16*>(tc_smem);
  bf16* dOs = Qs + size_t(kTile) * ld;
  bf16* Ks = dOs + size_t(kTile) * ld;
  bf16* Vs = Ks + size_t(kTile) * ld;
  bf16* dSs = Vs + size_t(kTile) * ld;
  float* lse2_s = reinterpret_cast<float*>(dSs + kTile * kLdP);
  float* delta_s = lse2_s + kTile;

  const int b = int(blockIdx.x) / NH, h = int(blockIdx.x) % NH;
  const int q0 = int(gridDim.y - 1 - blockIdx.y) * kTile;
  const size_t C3 = 3 * size_t(C);
  const bf16* q_base = qkv + size_t(b) * T * C3 + size_t(h) * HS;
  const bf16* do_base = dout + size_t(b) * T * C + size_t(h) * HS;
  const float* lse_row = lse + (size_t(b) * NH + h) * T;
  const float* delta_row = delta + (size_t(b) * NH + h) * T;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nt = HS / kFrag;
  bf16* dS_w = dSs + warp * kFrag * kLdP;
  float* stage = reinterpret_cast<float*>(dS_w);  // 2304 bytes, 256 floats needed
  int coord[kAccElems];
  accumulator_coords(stage, coord);
  load_rows(Qs, ld, q_base, C3, q0, T, HS);
  load_rows(dOs, ld, do_base, size_t(C), q0, T, HS);
  load_row_stats(lse2_s, delta_s, lse_row, delta_row, q0, T);

  AccFrag dq[KT];
#pragma unroll
  for (int n = 0; n < KT; ++n) wmma::fill_fragment(dq[n], 0.f);
  const int row0 = warp * kFrag;  // this warp's first row in the tile
  const int k_end = min(T, q0 + kTile);
  for (int k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();  // every warp is done with the previous K, V (and Q, dO are loaded)
    load_rows(Ks, ld, q_base + C, C3, k0, T, HS);
    load_rows(Vs, ld, q_base + 2 * C, C3, k0, T, HS);
    __syncthreads();

    for (int pass = 0; pass < kColFrags; pass += kPassFrags) {
      // S = Q_w K^T and dP = dO_w V^T for key columns [pass, pass + kPassFrags) * 16.
      AccFrag s[kPassFrags], dp[kPassFrags];
      backward_scores(s, dp, Qs, dOs, Ks, Vs, ld, nt, row0, pass);
      // dS = exp(s - lse_i) (dP - D_i) scale where key j <= query i < T, else 0.
#pragma unroll
      for (int f = 0; f < kPassFrags; ++f) {
#pragma unroll
        for (int e = 0; e < kAccElems; ++e) {
          const int r = coord[e] / kFrag, c = (pass + f) * kFrag + coord[e] % kFrag;
          const int i = q0 + row0 + r, j = k0 + c;
          float ds = 0.f;
          if (i < T && j <= i)
            ds = exp2f(s[f].x[e] * scale_log2 - lse2_s[row0 + r]) *
                 (dp[f].x[e] - delta_s[row0 + r]) * scale;
          dS_w[r * kLdP + c] = __float2bfloat16_rn(ds);
        }
      }
    }
    __syncwarp();

    // dQ_w += dS K over this tile's 64 keys.
    mma_step_rows(dq, dS_w, Ks, ld, nt);
  }

  // dQ of query row i into dqkv; the stage is this warp's dS rows.
  const int i = q0 + row0 + lane / 2;
  bf16* dq_row = i < T ? dqkv + (size_t(b) * T + i) * C3 + size_t(h) * HS + (lane % 2) * 8 : nullptr;
#pragma unroll
  for (int n = 0; n < KT; ++n)
    if (n < nt) store_tile(stage, dq[n], dq_row ? dq_row + n * kFrag : nullptr, 1.f);
#else
  __trap();
#endif
}

// ---- launchers ----

namespace {

// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <class Kernel> void allow_smem(Kernel kernel, size_t bytes, const char* op) {
  if (bytes > 48 * 1024)
    GPT_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(bytes)));
}

// Calls f(std::integral_constant<int, KT>) with the fewest register head-dim tiles, a
// power of two >= HS / 16 (HS in 16..128, checked by the caller).
template <class F> void dispatch_head_tiles(int HS, F&& f) {
  if (HS <= 16)
    f(std::integral_constant<int, 1>{});
  else if (HS <= 32)
    f(std::integral_constant<int, 2>{});
  else if (HS <= 64)
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 8>{});
}

dim3 tc_grid(int B, int T, int NH, const char* op) {
  const int64_t tiles = (int64_t(T) + kTile - 1) / kTile;
  if (tiles > 65535 || int64_t(B) * NH > INT32_MAX)
    fail(std::string("cuda ") + op + ": sequence length " + std::to_string(T) + " with " +
         std::to_string(int64_t(B) * NH) + " (batch, head) pairs exceeds the launch grid");
  return dim3(unsigned(B * NH), unsigned(tiles));
}

}  // namespace

bool attention_tc_available() {
  // Per process: bf16 wmma needs compute capability 8.0 (Ampere) or newer.
  static const bool ok = [] {
    int dev = 0, major = 0;
    GPT_CUDA_CHECK("attention", cudaGetDevice(&dev));
    GPT_CUDA_CHECK("attention",
                   cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major >= 8;
  }();
  return ok;
}

void attention_forward_tc(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                          int HS) {
  const char* op = "attention_forward";
  const dim3 grid = tc_grid(B, T, NH, op);
  const float scale_log2 = kLog2e / std::sqrt(float(HS));
  const size_t smem = forward_smem(HS);
  dispatch_head_tiles(HS, [&](auto tiles) {
    constexpr int KT = decltype(tiles)::value;
    allow_smem(attention_forward_tc_kernel<KT>, smem, op);
    attention_forward_tc_kernel<KT><<<grid, kThreads, smem, stream()>>>(out, lse, qkv, T, C, NH,
                                                                        HS, scale_log2);
    GPT_LAUNCH_CHECK(op, "attention_forward_tc_kernel");
  });
}

void attention_backward_tc(bf16* dqkv, const bf16* dout, const float* lse, const float* delta,
                           const bf16* qkv, int B, int T, int C, int NH, int HS) {
  const char* op = "attention_backward";
  const dim3 grid = tc_grid(B, T, NH, op);
  const float scale = 1.f / std::sqrt(float(HS));
  const float scale_log2 = kLog2e * scale;
  const size_t smem_dkv = backward_dkv_smem(HS), smem_dq = backward_dq_smem(HS);
  dispatch_head_tiles(HS, [&](auto tiles) {
    constexpr int KT = decltype(tiles)::value;
    allow_smem(attention_backward_dkv_tc_kernel<KT>, smem_dkv, op);
    attention_backward_dkv_tc_kernel<KT><<<grid, kThreads, smem_dkv, stream()>>>(
        dqkv, dout, lse, delta, qkv, T, C, NH, HS, scale_log2, scale);
    GPT_LAUNCH_CHECK(op, "attention_backward_dkv_tc_kernel");
    allow_smem(attention_backward_dq_tc_kernel<KT>, smem_dq, op);
    attention_backward_dq_tc_kernel<KT><<<grid, kThreads, smem_dq, stream()>>>(
        dqkv, dout, lse, delta, qkv, T, C, NH, HS, scale_log2, scale);
    GPT_LAUNCH_CHECK(op, "attention_backward_dq_tc_kernel");
  });
}

}  // namespace gpt::cuda
