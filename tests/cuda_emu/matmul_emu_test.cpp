// core/cuda/matmul.cu's own kernels (the GEMMs are cuBLASLt's) on the CPU under
// cuda_emulator.h (label `unit`): the bias gradient's two-stage column sum against the
// CPU backend's matmul_backward (accumulating, f32 and bf16 dout, either dbias dtype,
// one and several row chunks), and the bias broadcast of matmul_forward's fallback.
// Launches mirror the launchers; the extraction stops at "// ---- cuBLASLt ----".
#include "matmul_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct Case {
  DType act, dbias;
  int N, OC;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.act) << "_dbias_" << gpt::dtype_name(c.dbias) << "_N" << c.N
           << "_OC" << c.OC;
}

// matmul_backward's dbias part, replayed.
template <class T> void dbias_emu(Tensor& dbias, const Tensor& dout, int N, int OC, unsigned seed) {
  using namespace gpt::cuda;
  const int64_t rows = std::max<int64_t>(kMinRowsPerChunk, (N + kMaxChunks - 1) / kMaxChunks);
  const int chunks = int((N + rows - 1) / rows);
  std::vector<float> part(size_t(chunks) * size_t(OC), NAN);  // scratch() holds garbage
  const dim3 grid(unsigned((OC + kColThreads - 1) / kColThreads), unsigned(chunks));
  emu::launch(grid, kColThreads, 0, seed, [&] {
    colsum_partial_kernel<T>(part.data(), dout.data<T>(), N, OC, int(rows));
  });
  emu::launch(dim3(unsigned((OC + 255) / 256)), 256, 0, seed + 100,
              [&] { colsum_finish_kernel(any(dbias), part.data(), chunks, OC); });
}

class MatmulDbiasEmu : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulDbiasEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  const int C = 8;
  const Tensor dout = tensor({c.N, c.OC}, c.act, randn(size_t(c.N) * c.OC, 61));
  const Tensor inp = tensor({c.N, C}, c.act, randn(size_t(c.N) * C, 62));
  const Tensor weight = tensor({c.OC, C}, c.act, randn(size_t(c.OC) * C, 63));
  Tensor dbias = tensor({c.OC}, c.dbias, randn(size_t(c.OC), 64, 0.1f));
  Tensor ref = clone(dbias), again = clone(dbias);
  Tensor dweight = tensor({c.OC, C}, DType::F32, std::vector<float>(size_t(c.OC) * C, 0.f));
  if (c.act == DType::F32) {
    dbias_emu<float>(dbias, dout, c.N, c.OC, 1);
    dbias_emu<float>(again, dout, c.N, c.OC, 99);
  } else {
    dbias_emu<bf16>(dbias, dout, c.N, c.OC, 1);
    dbias_emu<bf16>(again, dout, c.N, c.OC, 99);
  }
  gpt::cpu_ops().matmul_backward(nullptr, dweight, &ref, dout, inp, weight);
  EXPECT_EQ(close_to(dbias, ref), "");
  EXPECT_EQ(same_bits(dbias, again), "") << "two schedules";
}

INSTANTIATE_TEST_SUITE_P(Shapes, MatmulDbiasEmu,
                         ::testing::Values(Case{DType::F32, DType::F32, 200, 300},
                                           Case{DType::BF16, DType::F32, 200, 300},
                                           Case{DType::BF16, DType::BF16, 5, 129},
                                           Case{DType::F32, DType::BF16, 64, 100}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(gpt::dtype_name(i.param.act)) + "_dbias_" +
                                  gpt::dtype_name(i.param.dbias) + "_N" +
                                  std::to_string(i.param.N) + "_OC" + std::to_string(i.param.OC);
                         });

// matmul_forward's fallback: out = bias broadcast over rows (then the GEMM adds to it).
template <class T> void check_broadcast(DType bias_dt) {
  using namespace gpt::cuda;
  const int N = 7, OC = 45;
  const size_t n = size_t(N) * OC;
  const Tensor bias = tensor({OC}, bias_dt, randn(size_t(OC), 71));
  Tensor out = tensor({N, OC}, dtype_of<T>(), std::vector<float>(n, NAN));
  emu::launch(dim3(grid_for(n, 256)), 256, 0, 1,
              [&] { broadcast_rows_kernel<T>(out.data<T>(), any(bias), size_t(N), OC); });
  const std::vector<float> b = host(bias), o = host(out);
  for (size_t i = 0; i < n; ++i) {
    const float want = host(tensor({1}, dtype_of<T>(), {b[i % OC]}))[0];  // rounded to T
    ASSERT_EQ(o[i], want) << "element " << i;
  }
}

TEST(MatmulBiasBroadcastEmu, Exact) {
  check_broadcast<float>(DType::F32);
  check_broadcast<float>(DType::BF16);
  check_broadcast<bf16>(DType::F32);
  check_broadcast<bf16>(DType::BF16);
}

}  // namespace
