// core/cuda/adamw.cu's kernels on the CPU under cuda_emulator.h (label `unit`), against
// the CPU backend: the AdamW update (float4 path for 16-byte-aligned ranges with and
// without a tail, scalar path for a view at an odd offset; three steps, so that the
// bias corrections change) and sum_squares (f32 and bf16, fewer and more elements than
// its fixed 512 x 256 threads), whose reduction order is fixed: the same bits under
// any schedule. Each launch mirrors its launcher, including the host-side scalars.
#include "core/ops.h"  // AdamWArgs, for adamw.cu's host-side adamw_scalars()
#include "adamw_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;
using gpt::cuda::AdamWScalars;

// adamw_update's launcher, replayed. max_blocks: grid_for's cap (65536 there; smaller
// here makes the grid-stride loops step, as 4 x 16.7 M parameters do on the GPU).
void adamw_emu(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const gpt::AdamWArgs& a,
               unsigned seed, size_t max_blocks, bool* used_float4) {
  using namespace gpt::cuda;
  const size_t n = size_t(param.numel());
  const AdamWScalars s = adamw_scalars(a);
  const auto aligned = [](const Tensor& t) {
    return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0;
  };
  const size_t n4 = aligned(param) && aligned(grad) && aligned(m) && aligned(v) ? n / 4 : 0;
  *used_float4 = n4 > 0;
  emu::launch(dim3(grid_for(n4 > 0 ? n4 : n, kThreads, max_blocks)), kThreads, 0, seed, [&] {
    adamw_kernel(param.f32(), grad.f32(), m.f32(), v.f32(), n, n4, s);
  });
}

// sum_squares' launcher, replayed (part: kSumBlocks + 1 doubles of scratch).
template <class T> double sum_squares_emu(const Tensor& x, unsigned seed) {
  using namespace gpt::cuda;
  std::vector<double> part(kSumBlocks + 1, std::nan(""));
  double* total = part.data() + kSumBlocks;
  const size_t n = size_t(x.numel());
  emu::launch(dim3(kSumBlocks), kThreads, 0, seed,
              [&] { sum_squares_partial_kernel<T>(part.data(), x.data<T>(), n); });
  emu::launch(dim3(1), kThreads, 0, seed + 1000,
              [&] { sum_squares_finish_kernel(total, part.data()); });
  return *total;
}

struct AdamCase {
  int n, offset;  // elements, and the view's offset in elements (odd: no float4)
  size_t max_blocks = 65536;
};
std::ostream& operator<<(std::ostream& o, const AdamCase& c) {
  return o << "n" << c.n << "_offset" << c.offset << "_max_blocks" << c.max_blocks;
}

class AdamWEmu : public ::testing::TestWithParam<AdamCase> {};

TEST_P(AdamWEmu, MatchesCpuBackend) {
  const AdamCase c = GetParam();
  const size_t total = size_t(c.n + c.offset);
  // One flat buffer per role, viewed at `offset` like a parameter slice.
  auto view = [&](unsigned seed, float scale) {
    return tensor({int64_t(total)}, DType::F32, randn(total, seed, scale)).slice(c.offset, {c.n});
  };
  Tensor p = view(41, 1.f), g = view(42, 0.1f), m = view(43, 0.01f), v = view(44, 0.f);
  Tensor rp = clone(p), rm = clone(m), rv = clone(v);
  for (int64_t step = 1; step <= 3; ++step) {
    const gpt::AdamWArgs a{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step};
    bool float4 = false;
    adamw_emu(p, g, m, v, a, unsigned(step), c.max_blocks, &float4);
    EXPECT_EQ(float4, c.offset % 4 == 0 && c.n >= 4);
    gpt::cpu_ops().adamw_update(rp, g, rm, rv, a);
    // The same fp32 operations in the same order on the same host: the same bits.
    EXPECT_EQ(same_bits(p, rp), "") << "param, step " << step;
    EXPECT_EQ(same_bits(m, rm), "") << "m, step " << step;
    EXPECT_EQ(same_bits(v, rv), "") << "v, step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranges, AdamWEmu,
                         ::testing::Values(AdamCase{1000, 0}, AdamCase{1003, 0},
                                           AdamCase{1003, 1}, AdamCase{3, 0},
                                           AdamCase{1003, 0, 1}, AdamCase{1003, 1, 2}),
                         [](const ::testing::TestParamInfo<AdamCase>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

// (Each run emulates 513 blocks of 256 threads, about 1.5 s under the sanitizers:
// two schedules for f32 only.)
TEST(SumSquaresEmu, F32MatchesCpuAndIsScheduleIndependent) {
  const int n = 300001;  // > 512 x 256: threads take several elements
  const Tensor x = tensor({n}, DType::F32, randn(size_t(n), 51, 3.f));
  const double got = sum_squares_emu<float>(x, 1);
  const double again = sum_squares_emu<float>(x, 777);
  const double ref = gpt::cpu_ops().sum_squares(x);
  EXPECT_NEAR(got, ref, 1e-12 * ref);
  EXPECT_EQ(std::memcmp(&got, &again, sizeof got), 0)
      << "two schedules: " << got << " vs " << again << " (the order is meant to be fixed)";
}

TEST(SumSquaresEmu, Bf16MatchesCpu) {
  const int n = 1000;  // most blocks get nothing
  const Tensor x = tensor({n}, DType::BF16, randn(size_t(n), 52, 3.f));
  const double got = sum_squares_emu<bf16>(x, 1);
  const double ref = gpt::cpu_ops().sum_squares(x);
  EXPECT_NEAR(got, ref, 1e-12 * ref);
}

}  // namespace
