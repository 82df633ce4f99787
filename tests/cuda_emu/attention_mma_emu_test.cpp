// core/cuda/attention_mma.cu's bf16 attention kernels (forward, dK/dV and dQ backward;
// inline-PTX mma.sync, ldmatrix, cp.async), run on the CPU under cuda_emulator.h (label `unit`, no GPU needed).
//
// Why: the kernels were written without a GPU. This catches missing barriers and
// cp.async waits, masking and tail-tile mistakes, shared-memory overlaps, reads of
// unwritten shared memory and fragment indexing that disagrees with the layouts the
// emulator implements (the PTX ISA's, cuda_emulator.h), on every build, in CI.
//
// What it checks, per shape (HS 64 and 128; T = 1, below, at and past one 64-key tile
// and one 128-query tile; several batches and heads):
//  * MatchesDoubleReference: forward and backward (into zeros and onto existing values)
//    against a double-precision reference;
//  * ScheduleIndependent: bit-identical results under two schedules, which also move
//    the moments at which cp.async copies land (a missing __syncthreads, __syncwarp or
//    cp.async wait makes them differ, or brings in NaN from the NaN-filled shared memory).
// What it cannot check: that the ISA's layouts were read right (the emulator implements
// the same reading), tensor-core rounding, the GPU memory model, timing, registers and
// the launchers; tests/cuda/test_cuda_ops.cpp (label gpu) does that on a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attention_mma_kernels.inc"
#include "attention_emu_reference.h"

namespace {

using namespace attention_emu;
using gpt::cuda::bf16;

template <int HS> Outputs run_kernels(const Shape& s, const Inputs& in, unsigned seed) {
  using namespace gpt::cuda;
  const int T = s.T, NH = s.NH, C = NH * HS;
  const float scale_log2 = 1.4426950408889634f / std::sqrt(float(HS));
  const std::vector<bf16> qkv = to_bf16(in.qkv);
  Outputs res;
  std::vector<bf16> out(size_t(s.B) * T * C, __float2bfloat16_rn(NAN));
  res.lse.assign(size_t(s.B) * NH * T, NAN);
  const dim3 grid(unsigned(s.B * NH), unsigned((T + kMmaFwdRows - 1) / kMmaFwdRows));
  launch(grid, kMmaFwdThreads, mma_forward_smem(HS), seed, [&] {
    attention_forward_mma_kernel<HS>(out.data(), res.lse.data(), qkv.data(), T, C, NH,
                                     scale_log2);
  });
  res.out = to_float(out);
  // The backward from the reference forward (as the GPU test does), into a NaN-filled dqkv.
  const float scale = 1.f / std::sqrt(float(HS));
  const std::vector<bf16> dout = to_bf16(in.dout);
  const dim3 bgrid(unsigned(s.B * NH), unsigned((T + kMmaBwdTile - 1) / kMmaBwdTile));
  std::vector<bf16> dqkv(in.qkv.size(), __float2bfloat16_rn(NAN));
  launch(bgrid, kMmaBwdThreads, mma_backward_dkv_smem(HS), seed + 1000, [&] {
    attention_backward_dkv_mma_kernel<HS>(dqkv.data(), dout.data(), in.lse.data(),
                                          in.delta.data(), qkv.data(), T, C, NH, scale_log2,
                                          scale);
  });
  launch(bgrid, kMmaBwdThreads, mma_backward_dq_smem(HS), seed + 2000, [&] {
    attention_backward_dq_mma_kernel<HS>(dqkv.data(), dout.data(), in.lse.data(),
                                         in.delta.data(), qkv.data(), T, C, NH, scale_log2,
                                         scale);
  });
  res.dqkv = to_float(dqkv);
  return res;
}

Outputs run_kernels(const Shape& s, const Inputs& in, unsigned seed) {
  if (s.HS == 64) return run_kernels<64>(s, in, seed);
  if (s.HS == 128) return run_kernels<128>(s, in, seed);
  ADD_FAILURE() << "no mma kernel for HS " << s.HS;
  return {};
}

// T around the 64-key step and the 128-query tile, T = 1 (one visible key), batches and
// heads, sharp softmaxes (the running max moves more).
const Shape kShapes[] = {
    {1, 1, 1, 64, 1.f},   {1, 63, 1, 64, 1.f},   {1, 64, 1, 64, 2.f},  {2, 65, 1, 64, 1.f},
    {1, 129, 1, 64, 1.f}, {1, 200, 2, 64, 1.5f}, {2, 1, 1, 128, 1.f},  {1, 63, 1, 128, 1.f},
    {1, 64, 1, 128, 1.f}, {2, 65, 2, 128, 2.f},  {1, 129, 1, 128, 1.f}, {1, 200, 1, 128, 1.f},
};

class AttentionMmaEmu : public testing::TestWithParam<Shape> {};

TEST_P(AttentionMmaEmu, MatchesDoubleReference) {
  const Shape s = GetParam();
  const Inputs in = make_inputs(s);
  expect_matches_reference(s, in, run_kernels(s, in, 11));
}

TEST_P(AttentionMmaEmu, ScheduleIndependent) {
  const Shape s = GetParam();
  const Inputs in = make_inputs(s);
  expect_same_bits(run_kernels(s, in, 11), run_kernels(s, in, 777));
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionMmaEmu, testing::ValuesIn(kShapes),
                         [](const testing::TestParamInfo<Shape>& info) {
                           return shape_name(info.param);
                         });

}  // namespace
