// core/cuda/elementwise.cu's kernels on the CPU under cuda_emulator.h (label `unit`),
// against the CPU backend: add, accumulate (same and mixed dtypes), scale, GELU
// forward and backward (overwriting), f32 and bf16; and convert f32 <-> bf16 bit for
// bit against core/bf16.h, through both kernels (the 8-wide one for aligned pointers,
// the scalar one for views at odd offsets), with NaN payloads, infinities, overflow to
// infinity, subnormals and rounding ties, and every one of the 65536 bf16 patterns.
// Each launch mirrors its launcher (grid_for(n, kThreads) blocks of kThreads).
#include "elementwise_kernels.inc"

#include "core/bf16.h"
#include "emu_op_test_support.h"

namespace {

using namespace emu_test;
using gpt::cuda::grid_for;
using gpt::cuda::kThreads;

// One grid-stride launch as the elementwise launchers make it. max_blocks: grid_for's
// cap (65536 in the launchers, reached on the GPU from 16.7 M elements); a small one
// makes each thread loop, as it does there.
template <class Kernel> void launch_n(size_t n, unsigned seed, size_t max_blocks, Kernel&& k) {
  emu::launch(dim3(grid_for(n, kThreads, max_blocks)), kThreads, 0, seed, k);
}

struct Case {
  DType dt;
  int n;
  size_t max_blocks = 65536;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.dt) << "_n" << c.n << "_max_blocks" << c.max_blocks;
}

class ElementwiseEmu : public ::testing::TestWithParam<Case> {};

template <class T> void check_ops(int n, size_t max_blocks) {
  using namespace gpt::cuda;
  const DType dt = dtype_of<T>(), other = dt == DType::F32 ? DType::BF16 : DType::F32;
  const size_t N = size_t(n);
  const gpt::Ops& cpu = gpt::cpu_ops();
  const Tensor a = tensor({n}, dt, randn(N, 21, 2.f)), b = tensor({n}, dt, randn(N, 22));
  const Tensor other_src = tensor({n}, other, randn(N, 23));
  const Tensor dout = tensor({n}, dt, randn(N, 24));

  Tensor out = tensor({n}, dt, std::vector<float>(N, NAN)), ref = clone(out);
  launch_n(N, 1, max_blocks,
           [&] { add_kernel<T>(out.data<T>(), a.data<T>(), b.data<T>(), N); });
  cpu.add(ref, a, b);
  EXPECT_EQ(same_bits(out, ref), "") << "add (one rounding: exact)";

  for (const Tensor* src : {&b, &other_src}) {
    Tensor dst = clone(a), dref = clone(a);
    launch_n(N, 2, max_blocks, [&] { accumulate_kernel<T>(dst.data<T>(), any(*src), N); });
    cpu.accumulate(dref, *src);
    EXPECT_EQ(same_bits(dst, dref), "")
        << "accumulate from " << gpt::dtype_name(src->dtype) << " (one rounding: exact)";
  }

  Tensor x = clone(a), xref = clone(a);
  launch_n(N, 3, max_blocks, [&] { scale_kernel<T>(x.data<T>(), -0.3f, N); });
  cpu.scale(xref, -0.3f);
  EXPECT_EQ(same_bits(x, xref), "") << "scale (one rounding: exact)";

  Tensor g = tensor({n}, dt, std::vector<float>(N, NAN)), gref = clone(g);
  launch_n(N, 4, max_blocks, [&] { gelu_forward_kernel<T>(g.data<T>(), a.data<T>(), N); });
  cpu.gelu_forward(gref, a);
  EXPECT_EQ(close_to(g, gref), "") << "gelu_forward";

  // Overwritten: NaN first here, zeros in the reference (close_to lets NaN match NaN).
  Tensor dinp = tensor({n}, dt, std::vector<float>(N, NAN)), dref = tensor({n}, dt, std::vector<float>(N, 0.f));
  launch_n(N, 5, max_blocks, [&] {
    gelu_backward_kernel<T>(dinp.data<T>(), a.data<T>(), dout.data<T>(), N);
  });
  cpu.gelu_backward(dref, a, dout);
  EXPECT_EQ(close_to(dinp, dref), "") << "gelu_backward";
}

TEST_P(ElementwiseEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  if (c.dt == DType::F32)
    check_ops<float>(c.n, c.max_blocks);
  else
    check_ops<bf16>(c.n, c.max_blocks);
}

INSTANTIATE_TEST_SUITE_P(Sizes, ElementwiseEmu,
                         ::testing::Values(Case{DType::F32, 1000}, Case{DType::BF16, 1000},
                                           Case{DType::F32, 7}, Case{DType::BF16, 513},
                                           Case{DType::F32, 1000, 2},
                                           Case{DType::BF16, 1000, 3}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

// convert's launcher (launch_convert in elementwise.cu), replayed: the wide kernel when
// both pointers are pack-aligned, else the scalar one. Returns whether it went wide.
template <class D, class S> bool convert_emu(D* dst, const S* src, size_t n, unsigned seed) {
  using namespace gpt::cuda;
  auto aligned = [](const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  if (aligned(dst, sizeof(ConvertPack<D>)) && aligned(src, sizeof(ConvertPack<S>))) {
    emu::launch(dim3(grid_for(n / kConvertVec, kThreads)), kThreads, 0, seed,
                [&] { convert_vec_kernel<D, S>(dst, src, n); });
    return true;
  }
  emu::launch(dim3(grid_for(n, kThreads)), kThreads, 0, seed,
              [&] { convert_scalar_kernel<D, S>(dst, src, n); });
  return false;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// f32 values whose rounding to bf16 is easy to get wrong, then random bit patterns.
std::vector<float> hard_floats(size_t n) {
  std::vector<uint32_t> u = {
      0x00000000, 0x80000000,              // +-0
      0x7f800000, 0xff800000,              // +-inf
      0x7fc00000, 0xffc00000,              // quiet NaN, negative
      0x7f800001, 0xff800001, 0x7fa5a5a5,  // signalling NaN payloads: must stay NaN
      0x7f7fffff, 0xff7fffff, 0x7f7f8000,  // round up to +-inf; the tie below max
      0x3f808000, 0x3f818000,              // ties: even stays, odd rounds up
      0x3f808001, 0x3f817fff,              // just above / below a tie
      0x00000001, 0x00008000, 0x00018000,  // subnormals, subnormal ties
      0x807fffff, 0x3f800000, 0xbf800000};
  std::mt19937 rng(31);
  while (u.size() < n) u.push_back(rng());
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = float_of(u[i]);
  return f;
}

// Both kernels, several lengths (tails of 0..7 elements, n < 8), against bf16.h and the
// CPU op, bit for bit. The buffers are 32-byte aligned: offset 0 takes the wide kernel,
// an odd offset the scalar one.
TEST(ConvertEmu, FloatToBf16BitExact) {
  constexpr size_t kMax = 4099;
  const std::vector<float> all = hard_floats(kMax);
  alignas(32) static float src[kMax + 16];
  alignas(32) static uint16_t dst[kMax + 16];
  for (size_t n : {size_t(4096), kMax, size_t(5), size_t(8), size_t(1)}) {
    const std::vector<float> head(all.begin(), all.begin() + long(n));
    Tensor s = tensor({int64_t(n)}, DType::F32, head);
    Tensor r = gpt::empty({int64_t(n)}, DType::BF16);
    gpt::cpu_ops().convert(r, s);
    for (size_t off : {size_t(0), size_t(1)}) {
      std::fill(std::begin(dst), std::end(dst), uint16_t(0xdead));
      std::copy(all.begin(), all.begin() + long(n), src + off);
      EXPECT_EQ(convert_emu(dst + off, src + off, n, unsigned(n + off)), off == 0);
      for (size_t i = 0; i < n; ++i) {
        const uint16_t want = gpt::float_to_bf16(all[i]);
        ASSERT_EQ(dst[off + i], want) << "n " << n << ", offset " << off << ", element " << i
                                      << " (f32 bits 0x" << std::hex << bits_of(all[i]) << ")";
        ASSERT_EQ(r.data<uint16_t>()[i], want) << "CPU op, element " << i;
      }
      ASSERT_EQ(dst[off + n], 0xdead) << "wrote past the end, n " << n;
      if (off > 0) {
        ASSERT_EQ(dst[off - 1], 0xdead) << "wrote before the start, n " << n;
      }
    }
  }
}

// Every bf16 pattern, through the wide kernel (n = 65536, and n = 1003 for a tail of 3
// done by block 0's first threads) and the scalar one (offset 3).
TEST(ConvertEmu, Bf16ToFloatEveryPattern) {
  constexpr size_t kAll = 65536;
  alignas(32) static uint16_t src[kAll + 16];
  alignas(32) static float dst[kAll + 16];
  for (auto [off, n] : {std::pair{size_t(0), kAll}, {size_t(0), size_t(1003)},
                        {size_t(3), kAll}}) {
    for (size_t i = 0; i < n; ++i) src[off + i] = uint16_t(i);
    std::fill(std::begin(dst), std::end(dst), NAN);
    EXPECT_EQ(convert_emu(dst + off, src + off, n, unsigned(n + off)), off == 0);
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(bits_of(dst[off + i]), bits_of(gpt::bf16_to_float(uint16_t(i))))
          << "n " << n << ", offset " << off << ", bf16 0x" << std::hex << i;
    ASSERT_TRUE(std::isnan(dst[off + n])) << "wrote past the end, n " << n;
  }
  Tensor s = gpt::empty({int64_t(kAll)}, DType::BF16), r = gpt::empty({int64_t(kAll)});
  for (size_t i = 0; i < kAll; ++i) s.data<uint16_t>()[i] = uint16_t(i);
  gpt::cpu_ops().convert(r, s);
  for (size_t i = 0; i < kAll; ++i)
    ASSERT_EQ(bits_of(r.f32()[i]), bits_of(gpt::bf16_to_float(uint16_t(i)))) << "CPU op " << i;
}

}  // namespace
