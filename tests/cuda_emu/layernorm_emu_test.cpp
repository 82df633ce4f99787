// core/cuda/layernorm.cu's kernels on the CPU under cuda_emulator.h (label `unit`),
// against the CPU backend: layernorm forward, the fused residual forward (the row kept
// in shared memory, and re-read from global memory when the block's rows exceed
// kMaxRowCacheBytes) and the backward (dinp, dweight, dbias, all accumulating), for f32
// and bf16 activations and either parameter dtype. Each launch mirrors its launcher's
// grid, block and shared memory (layernorm.cu, after "// ---- launchers ----").
// ScheduleIndependent runs everything under two thread schedules and wants the same
// bits (the kernels promise run-to-run determinism; no atomics).
#include "layernorm_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct Case {
  DType act, param;
  int N, C;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.act) << "_params_" << gpt::dtype_name(c.param) << "_N" << c.N
           << "_C" << c.C;
}

struct Buffers {
  Tensor inp, a, b, weight, bias;                      // inputs
  Tensor out, mean, rstd, sum, rout, rmean, rrstd;      // forward outputs
  Tensor dout, dinp, dweight, dbias;                    // backward (dinp etc. accumulate)
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
  b.bias = tensor({c.C}, c.param, randn(size_t(c.C), 5, 0.3f));
  b.out = tensor({c.N, c.C}, c.act, std::vector<float>(NC, NAN));
  b.mean = tensor({c.N}, DType::F32, std::vector<float>(size_t(c.N), NAN));
  b.rstd = clone(b.mean);
  b.sum = clone(b.out);
  b.rout = clone(b.out);
  b.rmean = clone(b.mean);
  b.rrstd = clone(b.mean);
  b.dout = tensor({c.N, c.C}, c.act, randn(NC, 6));
  b.dinp = tensor({c.N, c.C}, c.act, randn(NC, 7, 0.1f));
  b.dweight = tensor({c.C}, c.param, randn(size_t(c.C), 8, 0.1f));
  b.dbias = tensor({c.C}, c.param, randn(size_t(c.C), 9, 0.1f));
  return b;
}

Buffers clone_all(const Buffers& x) {
  Buffers b;
  for (auto [to, from] : {std::pair{&b.inp, &x.inp}, {&b.a, &x.a}, {&b.b, &x.b},
                          {&b.weight, &x.weight}, {&b.bias, &x.bias}, {&b.out, &x.out},
                          {&b.mean, &x.mean}, {&b.rstd, &x.rstd}, {&b.sum, &x.sum},
                          {&b.rout, &x.rout}, {&b.rmean, &x.rmean}, {&b.rrstd, &x.rrstd},
                          {&b.dout, &x.dout}, {&b.dinp, &x.dinp}, {&b.dweight, &x.dweight},
                          {&b.dbias, &x.dbias}})
    *to = clone(*from);
  return b;
}

// The three launchers, replayed through the emulator.
template <class T> void run_kernels(Buffers& b, int N, int C, unsigned seed) {
  using namespace gpt::cuda;
  const unsigned blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  // layernorm_forward
  emu::launch(dim3(blocks), kWarpsPerBlock * 32, 0, seed, [&] {
    layernorm_forward_kernel<T>(b.out.data<T>(), b.mean.f32(), b.rstd.f32(), b.inp.data<T>(),
                                any(b.weight), any(b.bias), N, C);
  });
  // residual_layernorm_forward
  const size_t cache_bytes = size_t(kWarpsPerBlock) * size_t(C) * sizeof(T);
  const bool row_in_smem = cache_bytes <= kMaxRowCacheBytes;
  emu::launch(dim3(blocks), kWarpsPerBlock * 32, row_in_smem ? cache_bytes : 0, seed + 100, [&] {
    residual_layernorm_forward_kernel<T>(b.sum.data<T>(), b.rout.data<T>(), b.rmean.f32(),
                                         b.rrstd.f32(), b.a.data<T>(), b.b.data<T>(),
                                         any(b.weight), any(b.bias), N, C, row_in_smem);
  });
  // layernorm_backward (mean and rstd from this forward, as in training)
  const int64_t rows = std::max<int64_t>(kMinRowsPerChunk, (N + kMaxChunks - 1) / kMaxChunks);
  const int chunks = int((N + rows - 1) / rows);
  const size_t part_floats = size_t(chunks) * size_t(C);
  std::vector<float> part(2 * part_floats, NAN);  // scratch() holds garbage
  float* part_w = part.data();
  float* part_b = part_w + part_floats;
  const unsigned row_blocks = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const dim3 col_grid(unsigned((C + kColThreads - 1) / kColThreads), unsigned(chunks));
  emu::launch(dim3(row_blocks), kWarpsPerBlock * 32, 0, seed + 200, [&] {
    layernorm_backward_dinp_kernel<T>(b.dinp.data<T>(), b.dout.data<T>(), b.inp.data<T>(),
                                      any(b.weight), b.mean.f32(), b.rstd.f32(), N, C);
  });
  emu::launch(col_grid, kColThreads, 0, seed + 300, [&] {
    layernorm_param_partial_kernel<T>(part_w, part_b, b.dout.data<T>(), b.inp.data<T>(),
                                      b.mean.f32(), b.rstd.f32(), N, C, int(rows));
  });
  emu::launch(dim3(unsigned((C + 255) / 256)), 256, 0, seed + 400, [&] {
    layernorm_param_finish_kernel(any(b.dweight), any(b.dbias), part_w, part_b, chunks, C);
  });
}

void run(const Case& c, Buffers& b, unsigned seed) {
  if (c.act == DType::F32)
    run_kernels<float>(b, c.N, c.C, seed);
  else
    run_kernels<bf16>(b, c.N, c.C, seed);
}

class LayernormEmu : public ::testing::TestWithParam<Case> {};

TEST_P(LayernormEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  Buffers emu = make_buffers(c);
  Buffers ref = clone_all(emu);
  run(c, emu, 1);
  const gpt::Ops& cpu = gpt::cpu_ops();
  cpu.layernorm_forward(ref.out, ref.mean, ref.rstd, ref.inp, ref.weight, ref.bias);
  cpu.residual_layernorm_forward(ref.sum, ref.rout, ref.rmean, ref.rrstd, ref.a, ref.b,
                                 ref.weight, ref.bias);
  cpu.layernorm_backward(ref.dinp, ref.dweight, ref.dbias, ref.dout, ref.inp, ref.weight,
                         ref.mean, ref.rstd);
  const double f32 = tolerance(DType::F32);
  EXPECT_EQ(close_to(emu.out, ref.out), "") << "out";
  EXPECT_EQ(close_to(host(emu.mean), host(ref.mean), f32), "") << "mean";
  EXPECT_EQ(close_to(host(emu.rstd), host(ref.rstd), f32), "") << "rstd";
  EXPECT_EQ(same_bits(emu.sum, ref.sum), "") << "residual sum (one rounding: exact)";
  EXPECT_EQ(close_to(emu.rout, ref.rout), "") << "residual out";
  EXPECT_EQ(close_to(host(emu.rmean), host(ref.rmean), f32), "") << "residual mean";
  EXPECT_EQ(close_to(host(emu.rrstd), host(ref.rrstd), f32), "") << "residual rstd";
  EXPECT_EQ(close_to(emu.dinp, ref.dinp), "") << "dinp";
  EXPECT_EQ(close_to(emu.dweight, ref.dweight), "") << "dweight";
  EXPECT_EQ(close_to(emu.dbias, ref.dbias), "") << "dbias";
}

// The fused op on a row gives layernorm_forward's bits for the same row (selective
// recomputation relies on it): normalise the saved sum with the plain kernel.
TEST_P(LayernormEmu, FusedMatchesPlainOnTheSum) {
  const Case c = GetParam();
  Buffers b = make_buffers(c);
  run(c, b, 1);
  Buffers again = clone_all(b);
  again.inp = clone(b.sum);
  run(c, again, 7);
  EXPECT_EQ(same_bits(again.out, b.rout), "") << "out";
  EXPECT_EQ(same_bits(again.mean, b.rmean), "") << "mean";
  EXPECT_EQ(same_bits(again.rstd, b.rrstd), "") << "rstd";
}

// The fused kernel's sum may alias a (the residual stream updated in place): the same
// bits as into a separate buffer.
TEST_P(LayernormEmu, ResidualSumMayAliasInput) {
  const Case c = GetParam();
  Buffers b = make_buffers(c);
  Buffers aliased = clone_all(b);
  run(c, b, 1);
  aliased.sum = aliased.a;  // the same storage
  run(c, aliased, 1);
  EXPECT_EQ(same_bits(aliased.a, b.sum), "") << "sum";
  EXPECT_EQ(same_bits(aliased.rout, b.rout), "") << "out";
  EXPECT_EQ(same_bits(aliased.rmean, b.rmean), "") << "mean";
}

TEST_P(LayernormEmu, ScheduleIndependent) {
  const Case c = GetParam();
  Buffers x = make_buffers(c);
  Buffers y = clone_all(x);
  run(c, x, 1);
  run(c, y, 12345);
  for (auto [p, q, what] : {std::tuple{&x.out, &y.out, "out"}, {&x.mean, &y.mean, "mean"},
                            {&x.rstd, &y.rstd, "rstd"}, {&x.sum, &y.sum, "sum"},
                            {&x.rout, &y.rout, "residual out"}, {&x.dinp, &y.dinp, "dinp"},
                            {&x.dweight, &y.dweight, "dweight"}, {&x.dbias, &y.dbias, "dbias"}})
    EXPECT_EQ(same_bits(*p, *q), "") << what;
}

// Rows per block: 8, so N = 13 leaves a part-empty last block; C = 77 is no multiple
// of 32; N = 150 gives the parameter gradients three row chunks (64 rows each). C =
// 2000 f32 (62.5 KiB for 8 rows) and C = 3100 bf16 (48.4 KiB) exceed the 48 KiB row
// cache: the fused forward re-reads the sum from global memory; C = 2000 bf16 fits.
INSTANTIATE_TEST_SUITE_P(
    Shapes, LayernormEmu,
    ::testing::Values(Case{DType::F32, DType::F32, 13, 77}, Case{DType::F32, DType::F32, 150, 96},
                      Case{DType::BF16, DType::BF16, 150, 96},
                      Case{DType::BF16, DType::F32, 13, 77},
                      Case{DType::F32, DType::BF16, 13, 64},
                      Case{DType::F32, DType::F32, 9, 2000},
                      Case{DType::BF16, DType::BF16, 9, 2000},
                      Case{DType::BF16, DType::BF16, 9, 3100}),
    [](const ::testing::TestParamInfo<Case>& i) {
      std::ostringstream s;
      s << i.param;
      return s.str();
    });

}  // namespace
