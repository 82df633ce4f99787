// core/cuda/rmsnorm.cu's kernels on the CPU under cuda_emulator.h (label `unit`), against
// the CPU backend: rmsnorm forward, the fused residual forward (row in shared memory,
// and re-read from global memory when the block's rows exceed kRmsMaxRowCacheBytes),
// and the backward (dinp and dweight accumulating), for f32 and bf16 activations and
// either parameter dtype. Each launch mirrors its launcher (rmsnorm.cu, after
// "// ---- launchers ----"). ScheduleIndependent wants the same bits under two thread
// schedules (no atomics: the kernels promise run-to-run determinism).
#include "rmsnorm_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

constexpr float kEps = 1e-5f;

struct Case {
  DType act, param;
  int N, C;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.act) << "_params_" << gpt::dtype_name(c.param) << "_N" << c.N
           << "_C" << c.C;
}

struct Buffers {
  Tensor inp, a, b, weight;                // inputs
  Tensor out, rstd, sum, rout, rrstd;      // forward outputs (NaN first)
  Tensor dout, dinp, dweight;              // backward (dinp, dweight accumulate)
  std::vector<Tensor*> all() {
    return {&inp, &a, &b, &weight, &out, &rstd, &sum, &rout, &rrstd, &dout, &dinp, &dweight};
  }
};

Buffers make_buffers(const Case& c) {
  const size_t NC = size_t(c.N) * c.C;
  Buffers b;
  b.inp = tensor({c.N, c.C}, c.act, randn(NC, 1, 2.f));
  b.a = tensor({c.N, c.C}, c.act, randn(NC, 2));
  b.b = tensor({c.N, c.C}, c.act, randn(NC, 3));
  std::vector<float> w = randn(size_t(c.C), 4, 0.5f);
  for (float& x : w) x += 1.f;
  b.weight = tensor({c.C}, c.param, w);
  b.out = tensor({c.N, c.C}, c.act, std::vector<float>(NC, NAN));
  b.rstd = tensor({c.N}, DType::F32, std::vector<float>(size_t(c.N), NAN));
  b.sum = clone(b.out);
  b.rout = clone(b.out);
  b.rrstd = clone(b.rstd);
  b.dout = tensor({c.N, c.C}, c.act, randn(NC, 6));
  b.dinp = tensor({c.N, c.C}, c.act, randn(NC, 7, 0.1f));
  b.dweight = tensor({c.C}, c.param, randn(size_t(c.C), 8, 0.1f));
  return b;
}

Buffers clone_all(Buffers& x) {
  Buffers b;
  std::vector<Tensor*> to = b.all(), from = x.all();
  for (size_t i = 0; i < to.size(); ++i) *to[i] = clone(*from[i]);
  return b;
}

// The three launchers, replayed through the emulator.
template <class T> void run_kernels(Buffers& b, int N, int C, unsigned seed) {
  using namespace gpt::cuda;
  const unsigned blocks = unsigned((N + kRmsWarpsPerBlock - 1) / kRmsWarpsPerBlock);
  emu::launch(dim3(blocks), kRmsWarpsPerBlock * 32, 0, seed, [&] {
    rmsnorm_forward_kernel<T>(b.out.data<T>(), b.rstd.f32(), b.inp.data<T>(), any(b.weight), N,
                              C, kEps);
  });
  const size_t cache_bytes = size_t(kRmsWarpsPerBlock) * size_t(C) * sizeof(T);
  const bool row_in_smem = cache_bytes <= kRmsMaxRowCacheBytes;
  emu::launch(dim3(blocks), kRmsWarpsPerBlock * 32, row_in_smem ? cache_bytes : 0, seed + 100,
              [&] {
                residual_rmsnorm_forward_kernel<T>(b.sum.data<T>(), b.rout.data<T>(),
                                                   b.rrstd.f32(), b.a.data<T>(), b.b.data<T>(),
                                                   any(b.weight), N, C, kEps, row_in_smem);
              });
  const int64_t rows =
      std::max<int64_t>(kRmsMinRowsPerChunk, (N + kRmsMaxChunks - 1) / kRmsMaxChunks);
  const int chunks = int((N + rows - 1) / rows);
  std::vector<float> part(size_t(chunks) * C, NAN);  // scratch() holds garbage
  const dim3 col_grid(unsigned((C + kRmsColThreads - 1) / kRmsColThreads), unsigned(chunks));
  emu::launch(dim3(blocks), kRmsWarpsPerBlock * 32, 0, seed + 200, [&] {
    rmsnorm_backward_dinp_kernel<T>(b.dinp.data<T>(), b.dout.data<T>(), b.inp.data<T>(),
                                    any(b.weight), b.rstd.f32(), N, C);
  });
  emu::launch(col_grid, kRmsColThreads, 0, seed + 300, [&] {
    rmsnorm_weight_partial_kernel<T>(part.data(), b.dout.data<T>(), b.inp.data<T>(),
                                     b.rstd.f32(), N, C, int(rows));
  });
  emu::launch(dim3(unsigned((C + 255) / 256)), 256, 0, seed + 400, [&] {
    rmsnorm_weight_finish_kernel(any(b.dweight), part.data(), chunks, C);
  });
}

void run(const Case& c, Buffers& b, unsigned seed) {
  if (c.act == DType::F32)
    run_kernels<float>(b, c.N, c.C, seed);
  else
    run_kernels<bf16>(b, c.N, c.C, seed);
}

class RmsnormEmu : public ::testing::TestWithParam<Case> {};

TEST_P(RmsnormEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  Buffers emu = make_buffers(c);
  Buffers ref = clone_all(emu);
  run(c, emu, 1);
  const gpt::Ops& cpu = gpt::cpu_ops();
  cpu.rmsnorm_forward(ref.out, ref.rstd, ref.inp, ref.weight, kEps);
  cpu.residual_rmsnorm_forward(ref.sum, ref.rout, ref.rrstd, ref.a, ref.b, ref.weight, kEps);
  cpu.rmsnorm_backward(ref.dinp, ref.dweight, ref.dout, ref.inp, ref.weight, ref.rstd);
  const double f32 = tolerance(DType::F32);
  EXPECT_EQ(close_to(emu.out, ref.out), "") << "out";
  EXPECT_EQ(close_to(host(emu.rstd), host(ref.rstd), f32), "") << "rstd";
  EXPECT_EQ(same_bits(emu.sum, ref.sum), "") << "residual sum (one rounding: exact)";
  EXPECT_EQ(close_to(emu.rout, ref.rout), "") << "residual out";
  EXPECT_EQ(close_to(host(emu.rrstd), host(ref.rrstd), f32), "") << "residual rstd";
  EXPECT_EQ(close_to(emu.dinp, ref.dinp), "") << "dinp";
  EXPECT_EQ(close_to(emu.dweight, ref.dweight), "") << "dweight";
}

// The fused op gives rmsnorm_forward's bits on the saved sum (recomputation relies on it),
// also with sum aliasing a (the residual stream updated in place).
TEST_P(RmsnormEmu, FusedMatchesPlainOnTheSum) {
  const Case c = GetParam();
  Buffers b = make_buffers(c);
  Buffers aliased = clone_all(b);
  run(c, b, 1);
  Buffers again = clone_all(b);
  again.inp = clone(b.sum);
  run(c, again, 7);
  EXPECT_EQ(same_bits(again.out, b.rout), "") << "out";
  EXPECT_EQ(same_bits(again.rstd, b.rrstd), "") << "rstd";
  aliased.sum = aliased.a;  // the same storage
  run(c, aliased, 3);
  EXPECT_EQ(same_bits(aliased.a, b.sum), "") << "sum in place";
  EXPECT_EQ(same_bits(aliased.rout, b.rout), "") << "out, sum in place";
}

TEST_P(RmsnormEmu, ScheduleIndependent) {
  const Case c = GetParam();
  Buffers x = make_buffers(c);
  Buffers y = clone_all(x);
  run(c, x, 1);
  run(c, y, 12345);
  std::vector<Tensor*> a = x.all(), b = y.all();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(same_bits(*a[i], *b[i]), "") << "tensor " << i;
}

// 8 rows per block: N = 13 leaves a part-empty block; C = 77 no multiple of 32; N = 150
// gives the weight gradient three row chunks; C = 2000 f32 (62.5 KiB for 8 rows) and
// 3100 bf16 exceed the 48 KiB row cache (the fused forward re-reads global memory).
INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsnormEmu,
    ::testing::Values(Case{DType::F32, DType::F32, 13, 77}, Case{DType::F32, DType::F32, 150, 96},
                      Case{DType::BF16, DType::BF16, 150, 96},
                      Case{DType::BF16, DType::F32, 13, 77},
                      Case{DType::F32, DType::BF16, 13, 64},
                      Case{DType::F32, DType::F32, 9, 2000},
                      Case{DType::BF16, DType::BF16, 9, 3100}),
    [](const ::testing::TestParamInfo<Case>& i) {
      std::ostringstream s;
      s << i.param;
      return s.str();
    });

}  // namespace
