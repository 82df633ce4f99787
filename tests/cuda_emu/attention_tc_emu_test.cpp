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
#include "attention_emu_reference.h"

namespace {

using namespace attention_emu;
using gpt::cuda::bf16;

// Forward, then backward into a NaN-filled dqkv from the reference forward, as the GPU
// unit test does. `seed` picks the schedules.
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
  launch(grid, 128, forward_smem(HS), seed, [&] {
    attention_forward_tc_kernel<KT>(out.data(), res.lse.data(), qkv.data(), T, C, NH, HS,
                                    scale_log2);
  });
  res.out = to_float(out);
  std::vector<bf16> dqkv(in.qkv.size(), __float2bfloat16_rn(NAN));
  launch(grid, 128, backward_dkv_smem(HS), seed + 1000, [&] {
    attention_backward_dkv_tc_kernel<KT>(dqkv.data(), dout.data(), in.lse.data(),
                                         in.delta.data(), qkv.data(), T, C, NH, HS,
                                         scale_log2, scale);
  });
  launch(grid, 128, backward_dq_smem(HS), seed + 2000, [&] {
    attention_backward_dq_tc_kernel<KT>(dqkv.data(), dout.data(), in.lse.data(),
                                        in.delta.data(), qkv.data(), T, C, NH, HS, scale_log2,
                                        scale);
  });
  res.dqkv = to_float(dqkv);
  return res;
}

// The launchers' choice of KT (register head-dim tiles) for HS.
Outputs run_kernels(const Shape& s, const Inputs& in, unsigned seed) {
  if (s.HS <= 16) return run_kernels<1>(s, in, seed);
  if (s.HS <= 32) return run_kernels<2>(s, in, seed);
  if (s.HS <= 64) return run_kernels<4>(s, in, seed);
  return run_kernels<8>(s, in, seed);
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
  const Inputs in = make_inputs(s);
  expect_matches_reference(s, in, run_kernels(s, in, 11));
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
