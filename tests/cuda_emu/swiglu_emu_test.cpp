// core/cuda/swiglu.cu's kernels on the CPU under cuda_emulator.h (label `unit`), against
// the CPU backend: forward and backward (dinp overwritten: NaN first) in f32 and bf16,
// F = 37 (no multiple of 8), gates spread wide (silu's tails); one case with a single
// block, so the grid-stride loops go round. Each launch mirrors its launcher.
#include "swiglu_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct SwigluCase {
  DType dt;
  int N, F;
  size_t max_blocks;
};
std::ostream& operator<<(std::ostream& o, const SwigluCase& c) {
  return o << gpt::dtype_name(c.dt) << "_N" << c.N << "_F" << c.F << "_blocks" << c.max_blocks;
}

template <class T>
void run_swiglu(Tensor& out, Tensor& dinp, const Tensor& inp, const Tensor& dout,
                const SwigluCase& c, unsigned seed) {
  using namespace gpt::cuda;
  const size_t n = size_t(c.N) * c.F;
  const dim3 grid(grid_for(n, kSwigluThreads, c.max_blocks));
  emu::launch(grid, kSwigluThreads, 0, seed, [&] {
    swiglu_forward_kernel<T>(out.data<T>(), inp.data<T>(), n, c.F);
  });
  emu::launch(grid, kSwigluThreads, 0, seed + 1, [&] {
    swiglu_backward_kernel<T>(dinp.data<T>(), inp.data<T>(), dout.data<T>(), n, c.F);
  });
}

class SwigluEmu : public ::testing::TestWithParam<SwigluCase> {};

TEST_P(SwigluEmu, MatchesCpuBackend) {
  const SwigluCase c = GetParam();
  const size_t n = size_t(c.N) * c.F;
  Tensor inp = tensor({c.N, 2 * c.F}, c.dt, randn(2 * n, 31, 3.f));
  Tensor dout = tensor({c.N, c.F}, c.dt, randn(n, 32));
  Tensor out = tensor({c.N, c.F}, c.dt, std::vector<float>(n, NAN));
  Tensor dinp = tensor({c.N, 2 * c.F}, c.dt, std::vector<float>(2 * n, NAN));
  Tensor ref_out = clone(out), ref_dinp = clone(dinp);
  if (c.dt == DType::F32)
    run_swiglu<float>(out, dinp, inp, dout, c, 1);
  else
    run_swiglu<bf16>(out, dinp, inp, dout, c, 1);
  gpt::cpu_ops().swiglu_forward(ref_out, inp);
  gpt::cpu_ops().swiglu_backward(ref_dinp, inp, dout);
  EXPECT_EQ(close_to(out, ref_out), "") << "out";
  EXPECT_EQ(close_to(dinp, ref_dinp), "") << "dinp";
}

INSTANTIATE_TEST_SUITE_P(Shapes, SwigluEmu,
                         ::testing::Values(SwigluCase{DType::F32, 13, 37, 65536},
                                           SwigluCase{DType::BF16, 13, 37, 65536},
                                           SwigluCase{DType::F32, 9, 64, 1}),
                         [](const ::testing::TestParamInfo<SwigluCase>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

}  // namespace
