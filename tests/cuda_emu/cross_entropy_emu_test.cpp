// core/cuda/cross_entropy.cu's kernels on the CPU under cuda_emulator.h (label `unit`),
// against the CPU backend: the forward (losses) and the fused forward-backward (losses,
// and the gradient written over the logits in place), f32 and bf16 logits, with ignored
// targets (-1), V below, above and not a multiple of the 512-thread block, and GPT-2's
// V = 50257. Each launch mirrors its launcher: one block of kThreads per row.
// ScheduleIndependent wants the same bits under two thread schedules (the block's
// merge is a fixed tree: no atomics). BadTargets: targets >= V, which the kernels see
// before the asynchronous range check reports them, give the rows of ignored targets
// and no read outside the logits (ASan).
#include "cross_entropy_kernels.inc"

#include <climits>
#include <utility>

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct Case {
  DType dt;
  int N, V;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.dt) << "_N" << c.N << "_V" << c.V;
}

struct Buffers {
  Tensor logits, grad, targets, losses, fb_losses;  // grad: logits, then in place
};

Buffers make_buffers(const Case& c) {
  const size_t NV = size_t(c.N) * c.V;
  Buffers b;
  b.logits = tensor({c.N, c.V}, c.dt, randn(NV, 11, 3.f));
  b.grad = clone(b.logits);
  b.targets = gpt::empty({c.N}, DType::I32);
  std::mt19937 rng(12);
  for (int n = 0; n < c.N; ++n)  // every third row ignored; the rest anywhere in [0, V)
    b.targets.i32()[n] = n % 3 == 1 ? -1 : int(rng() % unsigned(c.V));
  if (c.N > 2) b.targets.i32()[2] = c.V - 1;  // the last column
  b.losses = tensor({c.N}, DType::F32, std::vector<float>(size_t(c.N), NAN));
  b.fb_losses = clone(b.losses);
  return b;
}

constexpr float kDloss = 0.37f;

template <class T> void run_kernels(Buffers& b, int N, int V, unsigned seed) {
  using namespace gpt::cuda;
  emu::launch(dim3(unsigned(N)), kThreads, 0, seed, [&] {
    cross_entropy_forward_kernel<T>(b.losses.f32(), b.logits.data<T>(), b.targets.i32(), V);
  });
  emu::launch(dim3(unsigned(N)), kThreads, 0, seed + 100, [&] {
    cross_entropy_forward_backward_kernel<T>(b.fb_losses.f32(), b.grad.data<T>(),
                                             b.targets.i32(), V, kDloss);
  });
}

void run(const Case& c, Buffers& b, unsigned seed) {
  if (c.dt == DType::F32)
    run_kernels<float>(b, c.N, c.V, seed);
  else
    run_kernels<bf16>(b, c.N, c.V, seed);
}

class CrossEntropyEmu : public ::testing::TestWithParam<Case> {};

TEST_P(CrossEntropyEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  Buffers emu = make_buffers(c);
  Buffers ref = make_buffers(c);
  run(c, emu, 1);
  const gpt::Ops& cpu = gpt::cpu_ops();
  cpu.cross_entropy_forward(ref.losses, ref.logits, ref.targets);
  cpu.cross_entropy_forward_backward(ref.fb_losses, ref.grad, ref.targets, kDloss);
  const double f32 = tolerance(DType::F32);
  EXPECT_EQ(close_to(host(emu.losses), host(ref.losses), f32), "") << "losses";
  EXPECT_EQ(close_to(host(emu.fb_losses), host(ref.fb_losses), f32), "") << "fused losses";
  EXPECT_EQ(close_to(emu.grad, ref.grad), "") << "gradient";
  EXPECT_EQ(same_bits(emu.losses, emu.fb_losses), "") << "forward vs fused losses";
  for (int n = 0; n < c.N; ++n) {
    if (emu.targets.i32()[n] >= 0) continue;
    EXPECT_EQ(emu.losses.f32()[n], 0.f) << "row " << n;
    const std::vector<float> g = host(emu.grad);
    for (int v = 0; v < c.V; ++v)
      ASSERT_EQ(g[size_t(n) * c.V + v], 0.f) << "ignored row " << n << ", column " << v;
  }
}

TEST_P(CrossEntropyEmu, ScheduleIndependent) {
  const Case c = GetParam();
  Buffers x = make_buffers(c), y = make_buffers(c);
  run(c, x, 1);
  run(c, y, 999);
  EXPECT_EQ(same_bits(x.losses, y.losses), "") << "losses";
  EXPECT_EQ(same_bits(x.fb_losses, y.fb_losses), "") << "fused losses";
  EXPECT_EQ(same_bits(x.grad, y.grad), "") << "gradient";
}

// V = 64 makes every row a multiple of 64 bytes (the host allocator's granule), so ASan
// sees a read of logits[row][V] in the last row; INT_MAX reads nowhere near them.
TEST(CrossEntropyEmuBadTargets, AreIgnoredRowsAndStayInBounds) {
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(gpt::dtype_name(dt));
    const Case c{dt, 6, 64};
    Buffers emu = make_buffers(c), ref = make_buffers(c);
    for (auto [row, id] : {std::pair{0, c.V}, std::pair{3, INT_MAX}, std::pair{c.N - 1, c.V}}) {
      emu.targets.i32()[row] = id;
      ref.targets.i32()[row] = -1;
    }
    run(c, emu, 5);
    const gpt::Ops& cpu = gpt::cpu_ops();
    cpu.cross_entropy_forward(ref.losses, ref.logits, ref.targets);
    cpu.cross_entropy_forward_backward(ref.fb_losses, ref.grad, ref.targets, kDloss);
    EXPECT_EQ(close_to(host(emu.losses), host(ref.losses), tolerance(DType::F32)), "")
        << "losses";
    EXPECT_EQ(close_to(host(emu.fb_losses), host(ref.fb_losses), tolerance(DType::F32)), "")
        << "fused losses";
    EXPECT_EQ(close_to(emu.grad, ref.grad), "") << "gradient";
    const std::vector<float> g = host(emu.grad);
    for (int row : {0, 3, c.N - 1}) {
      EXPECT_EQ(emu.losses.f32()[row], 0.f) << "row " << row;
      EXPECT_EQ(emu.fb_losses.f32()[row], 0.f) << "row " << row;
      for (int v = 0; v < c.V; ++v)
        ASSERT_EQ(g[size_t(row) * c.V + v], 0.f) << "row " << row << ", column " << v;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CrossEntropyEmu,
    ::testing::Values(Case{DType::F32, 5, 1000}, Case{DType::BF16, 5, 1000},
                      Case{DType::F32, 4, 100}, Case{DType::BF16, 4, 37},
                      Case{DType::F32, 1, 50257}, Case{DType::BF16, 1, 50257}),
    [](const ::testing::TestParamInfo<Case>& i) {
      return std::string(gpt::dtype_name(i.param.dt)) + "_N" + std::to_string(i.param.N) +
             "_V" + std::to_string(i.param.V);
    });

}  // namespace

// The vocabulary-slice kernels against the CPU backend's slice ops: V = 600 in 4 slices
// of 256 ids (slice 2 holds 88 real ids and 168 padding, slice 3 padding only), f32 and
// bf16 logits, an ignored row and a target in the last real column. Each launch mirrors
// its launcher (one block per row; 32 threads for the loss alone, without logits).
namespace {

template <class T> void slice_case(DType dt) {
  using namespace gpt::cuda;
  const int N = 5, V = 600, Vs = 256, S = 4;
  const gpt::Ops& cpu = gpt::cpu_ops();
  Tensor targets = gpt::empty({N}, DType::I32);
  const int32_t ids[N] = {3, -1, 599, 300, 513};
  std::copy(ids, ids + N, targets.i32());
  Tensor stats = tensor({S, 3, N}, DType::F32, std::vector<float>(size_t(S * 3 * N), NAN));
  Tensor stats_ref = gpt::zeros({S, 3, N});
  std::vector<Tensor> logits;
  auto real = [&](int s) { return std::max(0, std::min(Vs, V - s * Vs)); };
  for (int s = 0; s < S; ++s) {
    logits.push_back(tensor({N, Vs}, dt, randn(size_t(N * Vs), 40 + unsigned(s), 3.f)));
    emu::launch(dim3(unsigned(N)), kThreads, 0, 7 + unsigned(s), [&] {
      cross_entropy_slice_stats_kernel<T>(stats.f32() + size_t(s) * 3 * N, logits.back().data<T>(),
                                          targets.i32(), N, Vs, real(s), (long long)s * Vs);
    });
    Tensor mine = stats_ref.slice(int64_t(s) * 3 * N, {3, N});
    cpu.cross_entropy_slice_stats(mine, logits.back(), targets, int64_t(s) * Vs, V);
  }
  std::vector<float> got = host(stats), want = host(stats_ref);
  for (size_t i = 0; i < want.size(); ++i)  // the padding-only slice's -inf maxima
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << "element " << i;
      got[i] = want[i] = 0.f;
    }
  EXPECT_EQ(close_to(got, want, tolerance(DType::F32)), "") << "stats";
  for (int s = 0; s < S; ++s) {
    Tensor grad = clone(logits[size_t(s)]), grad_ref = clone(logits[size_t(s)]);
    Tensor losses = tensor({N}, DType::F32, std::vector<float>(N, NAN)), losses_ref = gpt::zeros({N});
    Tensor only = clone(losses);
    emu::launch(dim3(unsigned(N)), kThreads, 0, 20 + unsigned(s), [&] {
      cross_entropy_slice_forward_backward_kernel<T>(losses.f32(), grad.data<T>(), targets.i32(),
                                                     stats.f32(), S, N, Vs, real(s), (long long)s * Vs,
                                                     V, kDloss);
    });
    emu::launch(dim3(unsigned(N)), 32, 0, 30 + unsigned(s), [&] {
      cross_entropy_slice_forward_backward_kernel<T>(only.f32(), nullptr, targets.i32(), stats.f32(),
                                                     S, N, Vs, real(s), (long long)s * Vs, V, kDloss);
    });
    cpu.cross_entropy_slice_forward_backward(losses_ref, &grad_ref, targets, stats_ref, int64_t(s) * Vs, V, kDloss);
    EXPECT_EQ(close_to(host(losses), host(losses_ref), tolerance(DType::F32)), "") << "losses, slice " << s;
    EXPECT_EQ(same_bits(only, losses), "") << "loss alone, slice " << s;
    EXPECT_EQ(close_to(grad, grad_ref), "") << "gradient, slice " << s;
  }
}

}  // namespace

TEST(CrossEntropyEmuSlices, MatchCpuBackend) {
  slice_case<float>(DType::F32);
  slice_case<bf16>(DType::BF16);
}
