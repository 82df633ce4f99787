// core/cuda/rope.cu's kernel on the CPU under cuda_emulator.h (label `unit`), against
// the CPU backend, in f32 and bf16: forward and backward out of place (v copied) and in
// place (bit for bit the same), on grouped-query and multi-query layouts with odd T,
// HS 10 and 64, both bases and position offsets. Each launch mirrors rope_launch; two
// cases cap the grid (grid_for's max_blocks) so the grid-stride loop goes round more
// than once.
#include "rope_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;
using gpt::RopeArgs;

struct RopeCase {
  DType dt;
  int B, T, NH, NKV, HS;
  float theta;
  int64_t pos;
  size_t max_blocks;
};
std::ostream& operator<<(std::ostream& o, const RopeCase& c) {
  return o << gpt::dtype_name(c.dt) << "_B" << c.B << "_T" << c.T << "_NH" << c.NH << "_NKV"
           << c.NKV << "_HS" << c.HS << "_theta" << int64_t(c.theta) << "_pos" << c.pos
           << "_blocks" << c.max_blocks;
}

// rope_launch, replayed: out of place unless out and inp are the same tensor.
template <class T>
void run_rope(Tensor& out, const Tensor& inp, const RopeCase& c, float sign, unsigned seed) {
  using namespace gpt::cuda;
  const int N = c.B * c.T, W = (c.NH + 2 * c.NKV) * c.HS;
  const size_t threads = size_t(N) * size_t(c.HS / 2);
  emu::launch(dim3(grid_for(threads, kRopeThreads, c.max_blocks)), kRopeThreads, 0, seed, [&] {
    rope_kernel<T>(out.data<T>(), inp.data<T>(), N, c.T, c.NH + c.NKV, W, c.HS, c.theta,
                   static_cast<long long>(c.pos), sign, out.raw() != inp.raw());
  });
}

class RopeEmu : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RopeEmu, MatchesCpuBackend) {
  const RopeCase c = GetParam();
  const gpt::Shape shape{c.B, c.T, (c.NH + 2 * c.NKV) * c.HS};
  const size_t n = size_t(c.B) * c.T * shape[2];
  const RopeArgs args{c.NH, c.NKV, c.theta, c.pos};
  Tensor x = tensor(shape, c.dt, randn(n, 21)), dy = tensor(shape, c.dt, randn(n, 22));
  Tensor out = tensor(shape, c.dt, std::vector<float>(n, NAN)), dx = clone(out);
  Tensor ref_out = clone(out), ref_dx = clone(out);
  const auto run = [&](Tensor& o, const Tensor& i, float sign, unsigned seed) {
    if (c.dt == DType::F32)
      run_rope<float>(o, i, c, sign, seed);
    else
      run_rope<bf16>(o, i, c, sign, seed);
  };
  run(out, x, 1.f, 1);
  run(dx, dy, -1.f, 2);
  gpt::cpu_ops().rope_forward(ref_out, x, args);
  gpt::cpu_ops().rope_backward(ref_dx, dy, args);
  EXPECT_EQ(close_to(out, ref_out), "") << "out";
  EXPECT_EQ(close_to(dx, ref_dx), "") << "dqkv";
  // In place: the same bits as out of place, under another schedule.
  Tensor in_place = clone(x);
  run(in_place, in_place, 1.f, 99);
  EXPECT_EQ(same_bits(in_place, out), "") << "in place";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RopeEmu,
    ::testing::Values(RopeCase{DType::F32, 2, 19, 6, 2, 10, 10000.f, 0, 65536},
                      RopeCase{DType::F32, 1, 7, 4, 1, 64, 500000.f, 3, 2},
                      RopeCase{DType::BF16, 2, 5, 4, 4, 16, 500000.f, 0, 65536},
                      RopeCase{DType::BF16, 1, 9, 6, 2, 10, 10000.f, 11, 3}),
    [](const ::testing::TestParamInfo<RopeCase>& i) {
      std::ostringstream s;
      s << i.param;
      return s.str();
    });

}  // namespace
