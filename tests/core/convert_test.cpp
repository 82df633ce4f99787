// The convert op on the CPU against bf16 bit patterns worked out by hand.
//
// bf16 keeps the top 16 bits of an f32 (sign, 8 exponent bits, 7 mantissa bits); the
// dropped 16 bits decide the rounding: above 0x8000 round up, below round down, exactly
// 0x8000 (a tie) round to the even kept pattern. Each case below names its f32 bits so
// the expected bf16 can be checked by eye.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace gpt {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

struct Case {
  uint32_t f32;
  uint16_t bf16;
  const char* what;
};

const Case kCases[] = {
    {0x3f800000u, 0x3f80, "1.0, exact"},
    {0x00000000u, 0x0000, "+0"},
    {0x80000000u, 0x8000, "-0 keeps its sign"},
    {0xc0490fdbu, 0xc049, "-pi: dropped 0x0fdb < half, rounds down (toward zero)"},
    {0x3f808000u, 0x3f80, "1 + 2^-8: tie, kept 0x3f80 even, stays"},
    {0x3f818000u, 0x3f82, "tie, kept 0x3f81 odd, rounds up to even 0x3f82"},
    {0xbf818000u, 0xbf82, "negative tie: to even like its magnitude"},
    {0x3f808001u, 0x3f81, "just above the tie rounds up"},
    {0x3f817fffu, 0x3f81, "just below the tie rounds down"},
    {0x3f7fffffu, 0x3f80, "largest float below 1 rounds up across the exponent"},
    {0x7f7fffffu, 0x7f80, "FLT_MAX overflows to +inf"},
    {0x7f7f7fffu, 0x7f7f, "below the overflow tie stays finite (bf16 max)"},
    {0x7f800000u, 0x7f80, "+inf"},
    {0xff800000u, 0xff80, "-inf"},
    {0x00012345u, 0x0001, "denormal, dropped 0x2345 < half"},
    {0x00018000u, 0x0002, "denormal tie, kept 0x0001 odd, rounds up"},
    {0x80008000u, 0x8000, "negative denormal tie, kept even 0x8000 (-0), stays"},
    {0x007fffffu, 0x0080, "largest denormal rounds up to the smallest normal"},
    {0x7fc00000u, 0x7fc0, "quiet NaN"},
    {0xffc00000u, 0xffc0, "negative quiet NaN keeps its sign"},
    {0x7f800001u, 0x7fc0, "signalling NaN with payload only in the dropped bits: quieted, "
                          "not turned into inf"},
    {0x7fa12345u, 0x7fe1, "signalling NaN: top payload bits kept, quiet bit set"},
};

Tensor f32_tensor(const std::vector<float>& v) {
  Tensor t = empty({int64_t(v.size())});
  std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

const Ops& cpu() { return cpu_ops(); }

TEST(Convert, F32ToBf16MatchesHandComputedBits) {
  std::vector<float> in;
  for (const Case& c : kCases) in.push_back(from_bits(c.f32));
  Tensor src = f32_tensor(in), dst = empty({int64_t(in.size())}, DType::BF16);
  cpu().convert(dst, src);
  const uint16_t* got = dst.data<uint16_t>();
  for (size_t i = 0; i < in.size(); ++i)
    EXPECT_EQ(got[i], kCases[i].bf16) << std::hex << "f32 0x" << kCases[i].f32 << ": "
                                      << kCases[i].what;
}

TEST(Convert, Bf16ToF32IsExactAndRoundTrips) {
  // Every one of the 65,536 bf16 patterns widens exactly (low 16 bits zero) and converts
  // back to itself; NaNs stay NaN with the same bits (they are already quiet or become so).
  const int64_t n = 1 << 16;
  Tensor h = empty({n}, DType::BF16), f = empty({n}), back = empty({n}, DType::BF16);
  for (int64_t i = 0; i < n; ++i) h.data<uint16_t>()[i] = uint16_t(i);
  cpu().convert(f, h);
  cpu().convert(back, f);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t pattern = uint16_t(i);
    const uint32_t wide = bits_of(f.f32()[i]);
    const bool nan = (pattern & 0x7fff) > 0x7f80;
    if (wide != uint32_t(pattern) << 16) ++mismatches;
    const uint16_t want = nan ? uint16_t(pattern | 0x40) : pattern;  // quiet bit set
    if (back.data<uint16_t>()[i] != want) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Convert, F32RoundTripIsWithinHalfAnUlp) {
  // f32 -> bf16 -> f32 moves a normal value by at most half a bf16 ulp: 8 significant
  // bits, so at most 2^-8 of its magnitude.
  std::vector<float> in;
  for (int i = -2000; i <= 2000; ++i) in.push_back(float(i) * 0.37f + 1e-3f * float(i * i));
  Tensor src = f32_tensor(in), mid = empty({int64_t(in.size())}, DType::BF16);
  Tensor out = empty({int64_t(in.size())});
  cpu().convert(mid, src);
  cpu().convert(out, mid);
  for (size_t i = 0; i < in.size(); ++i)
    ASSERT_LE(std::fabs(out.f32()[i] - in[i]), std::ldexp(std::fabs(in[i]), -8)) << in[i];
}

TEST(Convert, SameDtypeCopiesAndShapesMayDiffer) {
  std::vector<float> in = {1.5f, -2.25f, 3e-39f, std::numeric_limits<float>::infinity(), 7.f, 8.f};
  Tensor src = f32_tensor(in), dst = empty({2, 3});
  cpu().convert(dst, src);
  EXPECT_EQ(std::memcmp(dst.raw(), src.raw(), src.nbytes()), 0);
  Tensor h = empty({6}, DType::BF16), h2 = empty({3, 2}, DType::BF16);
  cpu().convert(h, src);
  cpu().convert(h2, h);
  EXPECT_EQ(std::memcmp(h2.raw(), h.raw(), h.nbytes()), 0);
  cpu().convert(h, h);  // onto itself: a no-op, not undefined
  EXPECT_EQ(std::memcmp(h2.raw(), h.raw(), h.nbytes()), 0);
}

TEST(Convert, LargeTensorAgreesWithScalarLoop) {
  // Big enough that OpenMP splits it; every thread's chunk must round the same way.
  const int64_t n = 100003;
  std::vector<float> in(static_cast<size_t>(n));
  uint32_t x = 12345;
  for (float& v : in) {
    x = x * 1664525u + 1013904223u;  // LCG: spreads bits over all exponents and signs
    v = from_bits(x);
  }
  Tensor src = f32_tensor(in), dst = empty({n}, DType::BF16);
  cpu().convert(dst, src);
  Tensor one = empty({1}, DType::BF16);
  for (int64_t i = 0; i < n; i += 997) {
    cpu().convert(one, src.slice(i, {1}));
    ASSERT_EQ(dst.data<uint16_t>()[i], one.data<uint16_t>()[0]) << i;
  }
}

TEST(Convert, RejectsMismatchedSizesAndIntegers) {
  Tensor a = empty({4}), b = empty({5}, DType::BF16);
  EXPECT_THROW(cpu().convert(b, a), Error);
  Tensor ids = empty({4}, DType::I32);
  EXPECT_THROW(cpu().convert(ids, a), Error);
  EXPECT_THROW(cpu().convert(a, ids), Error);
}

}  // namespace
}  // namespace gpt
