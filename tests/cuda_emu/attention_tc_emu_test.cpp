// core/cuda/attention_tc.cu's bf16 tensor-core attention kernels (forward, dK/dV and dQ
// backward), run on the CPU under cuda_emulator.h (label `unit`, no GPU needed).
//
// Why: the kernels were grown without a GPU; this catches missing barriers, masking and
// tail-tile mistakes, shared-memory overlaps, reads of unwritten shared memory and
// reliance on the hardware's wmma fragment layouts, on every build, in CI.
//
// What it emulates and checks: each kernel's blocks, one at a time, with threads
// scheduled in a random order between sync points; per shape (HS 16..128, T not a
// multiple of the 64-row tile, T = 1):
//  * MatchesDoubleReference: forward and backward against a double-precision reference;
//  * ScheduleIndependent: bit-identical results under two schedules (a missing
//    __syncthreads or __syncwarp makes them differ, or brings in NaN from the
//    NaN-filled shared memory);
//  * FragmentLayoutIndependent: bit-identical results under two scrambled wmma layouts.
// Built with ASan and UBSan where available (global-memory bounds, undefined behaviour).
//
// What it cannot check: real fragment layouts and tensor-core arithmetic, the GPU
// memory model, timing, occupancy and the launchers; tests/cuda/test_cuda_ops.cpp
// (label gpu) does that on a GPU. The kernels come from the .cu at build time
// (extract_kernels.cmake), the part before "// ---- launchers ----".
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "attention_tc_kernels.inc"

namespace {

using gpt::cuda::bf16;
using Vec = std::vector<float>;

// B batch, T sequence length, NH heads, HS head size (C = NH * HS); q, k, v and dout are
// normal, q and k scaled by `sharpness` (larger: peakier softmax).
struct Shape {
  int B, T, NH, HS;
  float sharpness;
};

std::string shape_name(const Shape& s) {
  return "B" + std::to_string(s.B) + "_T" + std::to_string(s.T) + "_NH" + std::to_string(s.NH) +
         "_HS" + std::to_string(s.HS);
}
void PrintTo(const Shape& s, std::ostream* os) {
  *os << shape_name(s) << " sharpness " << s.sharpness;
}

float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

std::vector<bf16> to_bf16(const Vec& v) {
  std::vector<bf16> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __float2bfloat16_rn(v[i]);
  return o;
}
Vec to_float(const std::vector<bf16>& v) {
  Vec o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __bfloat162float(v[i]);
  return o;
}

// max |got - want| / max |want|; infinite if anything in `got` is not finite.
double rel_err(const Vec& got, const Vec& want) {
  double diff = 0, mag = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::fabs(double(got[i]) - want[i]));
    mag = std::max(mag, std::fabs(double(want[i])));
  }
  return diff / std::max(mag, 1e-30);
}

// Every block of a grid of 128-thread blocks, one after another; block i gets schedule
// seed + i.
template <class Kernel> void launch(dim3 grid, size_t smem, unsigned seed, Kernel&& kernel) {
  gridDim = grid;
  blockDim = dim3(128);
  unsigned block_seed = seed;
  for (unsigned y = 0; y < grid.y; ++y)
    for (unsigned x = 0; x < grid.x; ++x) {
      blockIdx = make_uint3(x, y, 0);
      emu::run_block(128, smem, block_seed++, kernel);
    }
}

struct Inputs {
  Vec qkv, dout, dqkv_base;  // (B, T, 3C), (B, T, C), (B, T, 3C); all bf16 values
  Vec out, lse;              // the reference forward (out rounded to bf16)
  Vec delta;                 // D = rowsum(dout * out) per (b, h, t), as the backward gets it
};

struct Outputs {
  Vec out, lse;
  Vec dqkv_zero;  // backward into zeros
  Vec dqkv_acc;   // backward added to dqkv_base
};

// "" when a and b hold the same bits, else how many elements differ and the first.
std::string bit_differences(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return "sizes differ";
  size_t count = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && count++ == 0) first = i;
  if (count == 0) return "";
  return std::to_string(count) + " of " + std::to_string(a.size()) + " differ, first [" +
         std::to_string(first) + "]: " + std::to_string(a[first]) + " vs " +
         std::to_string(b[first]);
}

void expect_same_bits(const Outputs& a, const Outputs& b) {
  EXPECT_EQ(bit_differences(a.out, b.out), "") << "out";
  EXPECT_EQ(bit_differences(a.lse, b.lse), "") << "lse";
  EXPECT_EQ(bit_differences(a.dqkv_zero, b.dqkv_zero), "") << "dqkv";
  EXPECT_EQ(bit_differences(a.dqkv_acc, b.dqkv_acc), "") << "dqkv accumulated";
}

// Forward, then backward twice (into zeros, and added to dqkv_base) from the reference
// forward, as the GPU unit test does. `seed` picks the schedules.
template <int KT> Outputs run_kernels(const Shape& s, const Inputs& in, unsigned seed) {
  using namespace gpt::cuda;
  const int T = s.T, NH = s.NH, HS = s.HS, C = NH * HS;
  const float scale = 1.f / std::sqrt(float(HS));
  const float scale_log2 = 1.4426950408889634f * scale;
  const dim3 grid(unsigned(s.B * NH), unsigned((T + 63) / 64));
  const std::vector<bf16> qkv = to_bf16(in.qkv), dout = to_bf16(in.dout);
  Outputs res;
  std::vector<bf16> out(size_t(s.B) * T * C, __float2bfloat16_rn(NAN));
  res.lse.assign(size_t(s.B) * NH * T, NAN);
  launch(grid, forward_smem(HS), seed, [&] {
    attention_forward_tc_kernel<KT>(out.data(), res.lse.data(), qkv.data(), T, C, NH, HS,
                                    scale_log2);
  });
  res.out = to_float(out);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<bf16> dqkv = to_bf16(pass == 0 ? Vec(in.qkv.size(), 0.f) : in.dqkv_base);
    launch(grid, backward_dkv_smem(HS), seed + 1000, [&] {
      attention_backward_dkv_tc_kernel<KT>(dqkv.data(), dout.data(), in.lse.data(),
                                           in.delta.data(), qkv.data(), T, C, NH, HS,
                                           scale_log2, scale);
    });
    launch(grid, backward_dq_smem(HS), seed + 2000, [&] {
      attention_backward_dq_tc_kernel<KT>(dqkv.data(), dout.data(), in.lse.data(),
                                          in.delta.data(), qkv.data(), T, C, NH, HS, scale_log2,
                                          scale);
    });
    (pass == 0 ? res.dqkv_zero : res.dqkv_acc) = to_float(dqkv);
  }
  return res;
}

// The launchers' choice of KT (register head-dim tiles) for HS.
Outputs run_kernels(const Shape& s, const Inputs& in, unsigned seed) {
  if (s.HS <= 16) return run_kernels<1>(s, in, seed);
  if (s.HS <= 32) return run_kernels<2>(s, in, seed);
  if (s.HS <= 64) return run_kernels<4>(s, in, seed);
  return run_kernels<8>(s, in, seed);
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
void reference_forward(const Shape& s, const Vec& qkv, Vec& out, Vec& lse) {
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
void reference_backward(const Shape& s, const Inputs& in, Vec& dqkv) {
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

Inputs make_inputs(const Shape& s) {
  const int C = s.NH * s.HS;
  const size_t rows = size_t(s.B) * s.T;
  std::mt19937 rng(unsigned(1234 + s.T + s.HS));
  std::normal_distribution<float> normal(0.f, 1.f);
  Inputs in;
  in.qkv.resize(rows * 3 * C);
  in.dout.resize(rows * C);
  in.dqkv_base.resize(rows * 3 * C);
  for (size_t r = 0; r < rows; ++r)
    for (int c = 0; c < 3 * C; ++c)
      in.qkv[r * 3 * C + size_t(c)] = round_bf16(normal(rng) * (c < 2 * C ? s.sharpness : 1.f));
  for (float& v : in.dout) v = round_bf16(normal(rng));
  for (float& v : in.dqkv_base) v = round_bf16(normal(rng));
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
Vec qkv_part(const Vec& x, int C, int part) {
  Vec y;
  for (size_t r = 0; r < x.size() / (3 * size_t(C)); ++r) {
    const auto row = x.begin() + long(r * 3 * C);
    y.insert(y.end(), row + long(part) * C, row + long(part + 1) * C);
  }
  return y;
}

// Tail tiles (T % 64 != 0), up to three tiles, every KT (1, 2, 4, 8), head sizes that
// leave some of the KT register tiles unused (48, 80), several batches and heads, sharp
// softmaxes, T = 1.
const Shape kShapes[] = {
    {1, 77, 1, 64, 1.f},   {1, 129, 2, 16, 2.f}, {2, 70, 1, 128, 1.f}, {1, 64, 1, 80, 1.f},
    {1, 150, 1, 48, 1.5f}, {2, 100, 2, 32, 1.f}, {2, 1, 1, 32, 1.f},
};

class AttentionTcEmu : public testing::TestWithParam<Shape> {
 protected:
  void SetUp() override { emu::init_layouts(5); }
};

TEST_P(AttentionTcEmu, MatchesDoubleReference) {
  const Shape s = GetParam();
  const int C = s.NH * s.HS;
  const Inputs in = make_inputs(s);
  Vec grad;
  reference_backward(s, in, grad);
  Vec acc = in.dqkv_base;
  for (size_t i = 0; i < acc.size(); ++i) acc[i] += grad[i];

  const Outputs got = run_kernels(s, in, 11);
  // bf16 inputs and outputs: ~3e-3 is typical, the tolerances leave room for that.
  EXPECT_LE(rel_err(got.out, in.out), 1e-2) << "out";
  EXPECT_LE(rel_err(got.lse, in.lse), 1e-3) << "lse";
  if (s.T > 1) {  // at T = 1, dq and dk are 0 up to rounding (dv: in the check below)
    for (int part = 0; part < 3; ++part)
      EXPECT_LE(rel_err(qkv_part(got.dqkv_zero, C, part), qkv_part(grad, C, part)), 1e-2)
          << "d" << "qkv"[part];
  }
  EXPECT_LE(rel_err(got.dqkv_acc, acc), 1e-2) << "dqkv accumulated onto existing values";
}

// Any order of the threads between sync points must give the same bits; a missing
// barrier lets a thread read shared memory before (or after) it is rewritten.
TEST_P(AttentionTcEmu, ScheduleIndependent) {
  const Shape s = GetParam();
  const Inputs in = make_inputs(s);
  const Outputs a = run_kernels(s, in, 11);
  const Outputs b = run_kernels(s, in, 777);
  expect_same_bits(a, b);
}

// The emulator's mma arithmetic does not depend on the fragment layout, so neither may
// the results: a kernel that assumes a layout somewhere (a row factor applied to the
// wrong element, say) changes bits here even where the error hides in the tolerance.
TEST_P(AttentionTcEmu, FragmentLayoutIndependent) {
  const Shape s = GetParam();
  const Inputs in = make_inputs(s);
  const Outputs a = run_kernels(s, in, 11);
  emu::init_layouts(6);
  const Outputs b = run_kernels(s, in, 11);
  expect_same_bits(a, b);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTcEmu, testing::ValuesIn(kShapes),
                         [](const testing::TestParamInfo<Shape>& info) {
                           return shape_name(info.param);
                         });

}  // namespace
