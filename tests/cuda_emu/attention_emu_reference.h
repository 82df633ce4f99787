// The double-precision attention reference and the helpers that the CUDA-emulator tests
// of the attention kernels share (attention_tc_emu_test.cpp, attention_mma_emu_test.cpp):
// shapes, bf16-valued inputs, the reference forward and backward, error measures and a
// grid launcher. Include after the extracted kernels (they bring cuda_emulator.h).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace attention_emu {

using Vec = std::vector<float>;

// B batch, T sequence length, NH heads, HS head size (C = NH * HS); q, k, v and dout are
// normal, q and k scaled by `sharpness` (larger: peakier softmax).
struct Shape {
  int B, T, NH, HS;
  float sharpness;
};

inline std::string shape_name(const Shape& s) {
  return "B" + std::to_string(s.B) + "_T" + std::to_string(s.T) + "_NH" + std::to_string(s.NH) +
         "_HS" + std::to_string(s.HS);
}
inline void PrintTo(const Shape& s, std::ostream* os) {
  *os << shape_name(s) << " sharpness " << s.sharpness;
}

inline float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

inline std::vector<__nv_bfloat16> to_bf16(const Vec& v) {
  std::vector<__nv_bfloat16> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __float2bfloat16_rn(v[i]);
  return o;
}
inline Vec to_float(const std::vector<__nv_bfloat16>& v) {
  Vec o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __bfloat162float(v[i]);
  return o;
}

// max |got - want| / max |want|; infinite if anything in `got` is not finite.
inline double rel_err(const Vec& got, const Vec& want) {
  double diff = 0, mag = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::fabs(double(got[i]) - want[i]));
    mag = std::max(mag, std::fabs(double(want[i])));
  }
  return diff / std::max(mag, 1e-30);
}

// Every block of a grid of `threads`-thread blocks, one after another; block i gets
// schedule seed + i.
template <class Kernel>
inline void launch(dim3 grid, int threads, size_t smem, unsigned seed, Kernel&& kernel) {
  gridDim = grid;
  blockDim = dim3(unsigned(threads));
  unsigned block_seed = seed;
  for (unsigned y = 0; y < grid.y; ++y)
    for (unsigned x = 0; x < grid.x; ++x) {
      blockIdx = make_uint3(x, y, 0);
      emu::run_block(threads, smem, block_seed++, kernel);
    }
}

struct Inputs {
  Vec qkv, dout;  // (B, T, 3C), (B, T, C); bf16 values
  Vec out, lse;              // the reference forward (out rounded to bf16)
  Vec delta;                 // D = rowsum(dout * out) per (b, h, t), as the backward gets it
};

// "" when a and b hold the same bits, else how many elements differ and the first.
inline std::string bit_differences(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return "sizes differ";
  size_t count = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && count++ == 0) first = i;
  if (count == 0) return "";
  return std::to_string(count) + " of " + std::to_string(a.size()) + " differ, first [" +
         std::to_string(first) + "]: " + std::to_string(a[first]) + " vs " +
         std::to_string(b[first]);
}

// Where head h of row (b, t) starts in a (B, T, 3C) qkv tensor (part 0: q, 1: k, 2: v)
// and in a (B, T, C) tensor.
struct Offsets {
  int T, C, HS;
  size_t qkv(int b, int t, int part, int h) const {
    return (size_t(b) * T + t) * 3 * C + size_t(part) * C + size_t(h) * HS;
  }
  size_t act(int b, int t, int h) const { return (size_t(b) * T + t) * C + size_t(h) * HS; }
};

// Causal attention in double precision on the (bf16-valued) inputs.
inline void reference_forward(const Shape& s, const Vec& qkv, Vec& out, Vec& lse) {
  const int T = s.T, NH = s.NH, HS = s.HS;
  const Offsets at{T, NH * HS, HS};
  const double scale = 1.0 / std::sqrt(double(HS));
  out.assign(size_t(s.B) * T * NH * HS, 0.f);
  lse.assign(size_t(s.B) * NH * T, 0.f);
  std::vector<double> sc(static_cast<size_t>(T));
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < T; ++i) {
        const float* q = &qkv[at.qkv(b, i, 0, h)];
        double m = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const float* k = &qkv[at.qkv(b, j, 1, h)];
          double acc = 0;
          for (int d = 0; d < HS; ++d) acc += double(q[d]) * k[d];
          sc[size_t(j)] = acc * scale;
          m = std::max(m, sc[size_t(j)]);
        }
        double l = 0;
        for (int j = 0; j <= i; ++j) l += std::exp(sc[size_t(j)] - m);
        for (int d = 0; d < HS; ++d) {
          double acc = 0;
          for (int j = 0; j <= i; ++j)
            acc += std::exp(sc[size_t(j)] - m) * qkv[at.qkv(b, j, 2, h) + d];
          out[at.act(b, i, h) + d] = float(acc / l);
        }
        lse[(size_t(b) * NH + h) * T + i] = float(m + std::log(l));
      }
}

// dqkv from the reference forward's out and lse (as the kernels get them).
inline void reference_backward(const Shape& s, const Inputs& in, Vec& dqkv) {
  const int T = s.T, NH = s.NH, HS = s.HS;
  const Offsets at{T, NH * HS, HS};
  const double scale = 1.0 / std::sqrt(double(HS));
  std::vector<double> grad(in.qkv.size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int i = 0; i < T; ++i) {
        const float* q = &in.qkv[at.qkv(b, i, 0, h)];
        const float* dout = &in.dout[at.act(b, i, h)];
        const float* out = &in.out[at.act(b, i, h)];
        double* dq = &grad[at.qkv(b, i, 0, h)];
        double D = 0;
        for (int c = 0; c < HS; ++c) D += double(dout[c]) * out[c];
        for (int j = 0; j <= i; ++j) {
          const float* k = &in.qkv[at.qkv(b, j, 1, h)];
          const float* v = &in.qkv[at.qkv(b, j, 2, h)];
          double* dk = &grad[at.qkv(b, j, 1, h)];
          double* dv = &grad[at.qkv(b, j, 2, h)];
          double sc = 0, dp = 0;
          for (int c = 0; c < HS; ++c) {
            sc += double(q[c]) * k[c];
            dp += double(dout[c]) * v[c];
          }
          const double p = std::exp(sc * scale - in.lse[(size_t(b) * NH + h) * T + i]);
          const double ds = p * (dp - D) * scale;
          for (int c = 0; c < HS; ++c) {
            dq[c] += ds * k[c];
            dk[c] += ds * q[c];
            dv[c] += p * dout[c];
          }
        }
      }
  dqkv.assign(grad.size(), 0.f);
  for (size_t i = 0; i < grad.size(); ++i) dqkv[i] = float(grad[i]);
}

inline Inputs make_inputs(const Shape& s) {
  const int C = s.NH * s.HS;
  const size_t rows = size_t(s.B) * s.T;
  std::mt19937 rng(unsigned(1234 + s.T + s.HS));
  std::normal_distribution<float> normal(0.f, 1.f);
  Inputs in;
  in.qkv.resize(rows * 3 * C);
  in.dout.resize(rows * C);
  for (size_t r = 0; r < rows; ++r)
    for (int c = 0; c < 3 * C; ++c)
      in.qkv[r * 3 * C + size_t(c)] = round_bf16(normal(rng) * (c < 2 * C ? s.sharpness : 1.f));
  for (float& v : in.dout) v = round_bf16(normal(rng));
  reference_forward(s, in.qkv, in.out, in.lse);
  for (float& v : in.out) v = round_bf16(v);  // the backward gets bf16 out, as in training
  // D in fp32 from the bf16 dout and out.
  const Offsets at{s.T, C, s.HS};
  in.delta.assign(size_t(s.B) * s.NH * s.T, 0.f);
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.T; ++t)
      for (int h = 0; h < s.NH; ++h) {
        const size_t off = at.act(b, t, h);
        float acc = 0;
        for (int d = 0; d < s.HS; ++d) acc += in.dout[off + d] * in.out[off + d];
        in.delta[(size_t(b) * s.NH + h) * s.T + t] = acc;
      }
  return in;
}

// Columns [part * C, (part + 1) * C) of every row of a (rows, 3C) tensor: q, k or v.
inline Vec qkv_part(const Vec& x, int C, int part) {
  Vec y;
  for (size_t r = 0; r < x.size() / (3 * size_t(C)); ++r) {
    const auto row = x.begin() + long(r * 3 * C);
    y.insert(y.end(), row + long(part) * C, row + long(part + 1) * C);
  }
  return y;
}

// What a test's run of the kernels gives: forward, then backward from the reference
// forward into a NaN-filled dqkv (the kernels overwrite all of it).
struct Outputs {
  Vec out, lse, dqkv;
};

// got against the double-precision reference. bf16 inputs and outputs (and P, dS rounded
// to bf16 for their products): ~3e-3 is typical, the tolerances leave room for that.
inline void expect_matches_reference(const Shape& s, const Inputs& in, const Outputs& got) {
  const int C = s.NH * s.HS;
  Vec grad;
  reference_backward(s, in, grad);
  EXPECT_LE(rel_err(got.out, in.out), 1e-2) << "out";
  EXPECT_LE(rel_err(got.lse, in.lse), 1e-3) << "lse";
  if (s.T == 1) {  // dq and dk are 0 up to rounding: compared as a whole with dv
    EXPECT_LE(rel_err(got.dqkv, grad), 1e-2) << "dqkv";
    return;
  }
  for (int part = 0; part < 3; ++part)
    EXPECT_LE(rel_err(qkv_part(got.dqkv, C, part), qkv_part(grad, C, part)), 1e-2)
        << "d" << "qkv"[part];
}

inline void expect_same_bits(const Outputs& a, const Outputs& b) {
  EXPECT_EQ(bit_differences(a.out, b.out), "") << "out";
  EXPECT_EQ(bit_differences(a.lse, b.lse), "") << "lse";
  EXPECT_EQ(bit_differences(a.dqkv, b.dqkv), "") << "dqkv";
}

}  // namespace attention_emu
