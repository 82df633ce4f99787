// The LLaMA family's CPU ops (RMSNorm, RoPE, SwiGLU, grouped-query attention) on tiny
// cases whose answers are worked out by hand in the comments, plus the properties the
// model relies on: the fused residual RMSNorm has the bits of add + rmsnorm_forward,
// RoPE in place equals out of place and backward undoes forward, and gradients the
// table says accumulate do accumulate. The PyTorch comparisons on random inputs are in
// llama_ops_torch_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace gpt {
namespace {

const Ops& ops = cpu_ops();

Tensor of(Shape shape, const std::vector<float>& v, DType dt = DType::F32) {
  Tensor t = empty(std::move(shape), dt);
  EXPECT_EQ(size_t(t.numel()), v.size());
  from_host_f32(t, v.data());
  return t;
}

Tensor random_tensor(Shape shape, DType dt, uint64_t seed) {
  Tensor f = empty(shape, DType::F32);
  Rng rng(seed);
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = rng.normal();
  Tensor t = empty(shape, dt);
  ops.convert(t, f);
  return t;
}

void expect_values(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  std::vector<float> got = to_host_f32(t);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// x = [1, 7]: mean(x^2) = 25, so with eps 0 rstd = 1/5 and xhat = [0.2, 1.4]; w = [1, 0.5]
// gives out = [0.2, 0.7]. Backward with dout = [1, 1]: g = w dout = [1, 0.5],
// mean(g xhat) = (0.2 + 0.7) / 2 = 0.45, dx = rstd (g - xhat 0.45) = [0.182, -0.026],
// added to dinp = [10, 20]; dw = dout xhat = [0.2, 1.4], added to dweight = [1, 1].
TEST(LlamaOps, RmsnormByHand) {
  Tensor x = of({1, 2}, {1.f, 7.f}), w = of({2}, {1.f, 0.5f});
  Tensor out = empty({1, 2}), rstd = empty({1});
  ops.rmsnorm_forward(out, rstd, x, w, 0.f);
  expect_values(out, {0.2, 0.7});
  expect_values(rstd, {0.2});
  Tensor dinp = of({1, 2}, {10.f, 20.f}), dw = of({2}, {1.f, 1.f});
  ops.rmsnorm_backward(dinp, dw, of({1, 2}, {1.f, 1.f}), x, w, rstd);
  expect_values(dinp, {10.182, 19.974}, 2e-6);
  expect_values(dw, {1.2, 2.4});
  // eps enters under the root: x = [0, 4] has mean(x^2) 8, + eps 8 = 16, rstd 1/4.
  ops.rmsnorm_forward(out, rstd, of({1, 2}, {0.f, 4.f}), w, 8.f);
  expect_values(rstd, {0.25});
  expect_values(out, {0.0, 0.5});
}

TEST(LlamaOps, ResidualRmsnormEqualsAddThenRmsnormBitForBit) {
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Shape shape{37, 61};
    Tensor a = random_tensor(shape, dt, 1), b = random_tensor(shape, dt, 2);
    Tensor w = random_tensor({61}, DType::F32, 3);
    Tensor sum_ref = empty(shape, dt), out_ref = empty(shape, dt), rstd_ref = empty({37});
    ops.add(sum_ref, a, b);
    ops.rmsnorm_forward(out_ref, rstd_ref, sum_ref, w, 1e-5f);
    Tensor sum = empty(shape, dt), out = empty(shape, dt), rstd = empty({37});
    ops.residual_rmsnorm_forward(sum, out, rstd, a, b, w, 1e-5f);
    EXPECT_TRUE(same_bits(sum, sum_ref)) << "sum";
    EXPECT_TRUE(same_bits(out, out_ref)) << "out";
    EXPECT_TRUE(same_bits(rstd, rstd_ref)) << "rstd";
    // In place on the residual stream: sum aliasing a.
    ops.residual_rmsnorm_forward(a, out, rstd, a, b, w, 1e-5f);
    EXPECT_TRUE(same_bits(a, sum_ref)) << "sum in place";
    EXPECT_TRUE(same_bits(out, out_ref)) << "out, sum in place";
  }
}

// One q head and one k head of HS = 4 (pairs (0, 2) and (1, 3)), one v head, T = 2,
// theta 10,000: pair 0 turns at 1 rad per position, pair 1 at 10000^(-2/4) = 0.01.
// Row t = 0 is unchanged (angle 0); at t = 1, q = [1, 0, 0, 0] becomes
// [cos 1, 0, sin 1, 0] and k = [0, 1, 0, 2] becomes
// [0, cos .01 - 2 sin .01, 0, 2 cos .01 + sin .01]; v = [5, 6, 7, 8] is copied.
TEST(LlamaOps, RopeByHand) {
  const std::vector<float> row = {1, 0, 0, 0, 0, 1, 0, 2, 5, 6, 7, 8};
  std::vector<float> two_rows = row;
  two_rows.insert(two_rows.end(), row.begin(), row.end());
  Tensor qkv = of({1, 2, 12}, two_rows), out = empty({1, 2, 12});
  const RopeArgs r{1, 1, 10000.f, 0};
  ops.rope_forward(out, qkv, r);
  const double c1 = std::cos(1.0), s1 = std::sin(1.0), c = std::cos(0.01), s = std::sin(0.01);
  std::vector<double> want(row.begin(), row.end());
  for (double v : {c1, 0.0, s1, 0.0, 0.0, c - 2 * s, 0.0, 2 * c + s, 5.0, 6.0, 7.0, 8.0})
    want.push_back(v);
  expect_values(out, want);

  // pos_offset 3: row 0 turns by 3 rad (pair 0), row 1 by 4 rad.
  ops.rope_forward(out, qkv, RopeArgs{1, 1, 10000.f, 3});
  std::vector<float> got = to_host_f32(out);
  EXPECT_NEAR(got[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(got[2], std::sin(3.0), 1e-6);
  EXPECT_NEAR(got[12], std::cos(4.0), 1e-6);
  EXPECT_NEAR(got[14], std::sin(4.0), 1e-6);
}

// GQA layout [q (NH) | k (NKV) | v (NKV)], odd T, two groups of three query heads.
TEST(LlamaOps, RopeInPlaceAndInverse) {
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const RopeArgs r{6, 2, 500000.f, 5};
    const Shape shape{2, 7, (6 + 2 * 2) * 10};
    Tensor x = random_tensor(shape, dt, 4), out = empty(shape, dt), back = empty(shape, dt);
    ops.rope_forward(out, x, r);
    Tensor in_place = empty(shape, dt);
    copy_(in_place, x);
    ops.rope_forward(in_place, in_place, r);
    EXPECT_TRUE(same_bits(in_place, out)) << "in place differs from out of place";
    // Rotation preserves the norm of each pair and backward (the transpose) undoes it.
    ops.rope_backward(back, out, r);
    std::vector<float> a = to_host_f32(x), b = to_host_f32(back);
    const double tol = dt == DType::F32 ? 1e-6 : 2e-2;
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << i;
    ops.rope_backward(out, out, r);
    EXPECT_TRUE(same_bits(out, back)) << "backward in place differs";
  }
}

TEST(LlamaOps, RopeRejectsOddHeadSize) {
  Tensor x = zeros({1, 2, 9}), out = zeros({1, 2, 9});  // 3 heads of 3
  EXPECT_THROW(ops.rope_forward(out, x, RopeArgs{1, 1, 10000.f, 0}), std::exception);
}

// F = 1 per row. Gate 0: silu(0) = 0, silu'(0) = sigmoid(0) = 1/2, so with up = 5 and
// dout = 1 out = 0, dgate = 5/2, dup = 0. Gate 2, up 3, dout 1: sigmoid(2) = s,
// out = 2 s 3, dgate = 3 s (1 + 2 (1 - s)), dup = 2 s. Gate -100: out ~ -1e-42, nothing
// overflows into a NaN.
TEST(LlamaOps, SwigluByHand) {
  Tensor inp = of({3, 2}, {0.f, 5.f, 2.f, 3.f, -100.f, 4.f}), out = empty({3, 1});
  ops.swiglu_forward(out, inp);
  const double s = 1.0 / (1.0 + std::exp(-2.0));
  expect_values(out, {0.0, 2 * s * 3, 0.0});
  Tensor dinp = of({3, 2}, std::vector<float>(6, NAN));  // overwritten
  ops.swiglu_backward(dinp, inp, of({3, 1}, {1.f, 1.f, 1.f}));
  expect_values(dinp, {2.5, 0.0, 3 * s * (1 + 2 * (1 - s)), 2 * s, 0.0, 0.0});
}

// HS = 1, T = 2, two query heads sharing one kv head: k = [0, ln 3], v = [4, 8].
// Row 0 sees key 0 only: both heads output v0 = 4, lse 0 (score 0). Row 1, head 0 with
// q = 1: scores [0, ln 3], p = [1/4, 3/4], out = 1 + 6 = 7, lse = ln 4; head 1 with
// q = 0: p = [1/2, 1/2], out 6, lse ln 2. Backward with dout 1 at (row 1, head 0) only:
// dV = p = [1/4, 3/4]; dP = dout v = [4, 8], D = dout out = 7, dS = p (dP - D) =
// [-3/4, 3/4]; dq = dS k = (3/4) ln 3, dK = dS q = [-3/4, 3/4]; the rest is zero.
TEST(LlamaOps, GroupedQueryAttentionByHand) {
  const float ln3 = std::log(3.f);
  // Rows [q0, q1, k, v].
  Tensor qkv = of({1, 2, 4}, {0.f, 0.f, 0.f, 4.f, 1.f, 0.f, ln3, 8.f});
  Tensor out = empty({1, 2, 2}), lse = empty({1, 2, 2});
  ops.attention_gqa_forward(out, lse, qkv, 2, 1);
  expect_values(out, {4, 4, 7, 6}, 1e-5);
  expect_values(lse, {0, std::log(4.0), 0, std::log(2.0)}, 1e-5);
  Tensor dqkv = of({1, 2, 4}, std::vector<float>(8, NAN));  // overwritten
  ops.attention_gqa_backward(dqkv, of({1, 2, 2}, {0.f, 0.f, 1.f, 0.f}), out, lse, qkv, 2, 1);
  expect_values(dqkv, {0, 0, -0.75, 0.25, 0.75 * std::log(3.0), 0, 0.75, 0.75}, 1e-5);
}

}  // namespace
}  // namespace gpt
