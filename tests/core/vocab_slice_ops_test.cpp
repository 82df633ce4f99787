// The vocabulary-slice ops (core/ops.h) on the CPU against a hand-written double
// precision reference of the whole vocabulary: the embedding lookup summed over slices,
// and the softmax cross-entropy and its gradient combined from per-slice statistics.
// V = 13 over 4 slices of 5 ids (padded to 20): slice 2 holds 3 real ids and 2 padding,
// slice 3 padding only. Padding logits are set huge, so a padding column that took part
// in the max or the sum would show.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"

namespace gpt {
namespace {

constexpr int64_t V = 13, Vs = 5, S = 4, N = 6, C = 3, B = 2, T = 3;

std::vector<float> normals(size_t n, uint64_t key, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * counter_normal(key, uint64_t(i));
  return v;
}

Tensor host(const std::vector<float>& v, Shape shape) {
  Tensor t = empty(std::move(shape));
  from_host_f32(t, v.data());
  return t;
}

Tensor ids(const std::vector<int32_t>& v, Shape shape) {
  Tensor t = empty(std::move(shape), DType::I32);
  std::copy(v.begin(), v.end(), t.i32());
  return t;
}

TEST(VocabSliceOps, CrossEntropyFromSliceStatisticsEqualsTheWholeVocabulary) {
  const Ops& ops = cpu_ops();
  const std::vector<float> logits = normals(size_t(N * V), 7, 3.f);  // [N, V]
  // Targets in every real slice, the last real id, and one ignored row.
  const std::vector<int32_t> target_ids{0, 7, 12, 10, -1, 4};
  const Tensor targets = ids(target_ids, {N});
  const float dloss = 0.25f;

  // Reference in double: loss_n = logsumexp(z_n) - z_n[t], dz = dloss (softmax - onehot).
  std::vector<double> want_loss(N, 0.0), want_grad(size_t(N * V), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (target_ids[size_t(n)] < 0) continue;
    double mx = -1e300, sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(logits[size_t(n * V + v)]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(logits[size_t(n * V + v)]) - mx);
    const double lse = mx + std::log(sum);
    want_loss[size_t(n)] = lse - logits[size_t(n * V + target_ids[size_t(n)])];
    for (int64_t v = 0; v < V; ++v)
      want_grad[size_t(n * V + v)] = dloss * (std::exp(double(logits[size_t(n * V + v)]) - lse) -
                                              (v == target_ids[size_t(n)] ? 1.0 : 0.0));
  }

  // Each slice's logits [N, Vs]; padding columns (ids >= V) get 1e4.
  std::vector<Tensor> slices;
  Tensor stats = zeros({S, 3, N});
  for (int64_t s = 0; s < S; ++s) {
    std::vector<float> z(size_t(N * Vs));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < Vs; ++j) {
        const int64_t id = s * Vs + j;
        z[size_t(n * Vs + j)] = id < V ? logits[size_t(n * V + id)] : 1e4f;
      }
    slices.push_back(host(z, {N, Vs}));
    Tensor mine = stats.slice(s * 3 * N, {3, N});
    ops.cross_entropy_slice_stats(mine, slices.back(), targets, s * Vs, V);
  }
  // The padding-only slice adds nothing: sum-exp 0 (and no target logit).
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(stats.f32()[3 * 3 * N + N + n], 0.f);
    EXPECT_EQ(stats.f32()[3 * 3 * N + 2 * N + n], 0.f);
  }

  Tensor losses = zeros({N}), forward_only = zeros({N});
  for (int64_t s = 0; s < S; ++s) {
    ops.cross_entropy_slice_forward_backward(losses, &slices[size_t(s)], targets, stats, s * Vs, V, dloss);
    ops.cross_entropy_slice_forward_backward(forward_only, nullptr, targets, stats, s * Vs, V, dloss);
    for (int64_t n = 0; n < N; ++n) {
      EXPECT_NEAR(losses.f32()[n], want_loss[size_t(n)], 1e-5 * (1 + want_loss[size_t(n)])) << "row " << n;
      EXPECT_EQ(forward_only.f32()[n], losses.f32()[n]);
      for (int64_t j = 0; j < Vs; ++j) {
        const int64_t id = s * Vs + j;
        const float got = slices[size_t(s)].f32()[n * Vs + j];
        if (id >= V) EXPECT_EQ(got, 0.f) << "padding id " << id;
        else EXPECT_NEAR(got, want_grad[size_t(n * V + id)], 1e-6) << "row " << n << " id " << id;
      }
    }
  }
}

TEST(VocabSliceOps, EmbeddingSlicesSumToTheWholeLookup) {
  const Ops& ops = cpu_ops();
  const std::vector<float> wte = normals(size_t(V * C), 11, 1.f), wpe = normals(size_t(T * C), 12, 1.f);
  const std::vector<int32_t> tok{0, 12, 5, 5, 9, 10};  // [B, T]; id 5 twice
  const Tensor tokens = ids(tok, {B, T}), wpe_t = host(wpe, {T, C});
  const std::vector<float> dout = normals(size_t(B * T * C), 13, 1.f);
  const Tensor dout_t = host(dout, {B, T, C});

  std::vector<double> sum(size_t(B * T * C), 0.0);
  std::vector<float> dwte_got;  // the slices' dwte rows, concatenated (padding dropped)
  for (int64_t s = 0; s < S; ++s) {
    std::vector<float> rows(size_t(Vs * C), 0.f);
    for (int64_t j = 0; j < Vs && s * Vs + j < V; ++j)
      for (int64_t c = 0; c < C; ++c) rows[size_t(j * C + c)] = wte[size_t((s * Vs + j) * C + c)];
    Tensor slice = host(rows, {Vs, C}), out = zeros({B, T, C});
    ops.encoder_slice_forward(out, tokens, slice, s == 0 ? &wpe_t : nullptr, s * Vs, V);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += out.f32()[i];

    Tensor dslice = zeros({Vs, C}), dwpe = zeros({T, C});
    ops.encoder_slice_backward(dslice, dwpe, dout_t, tokens, s * Vs);
    for (int64_t j = 0; j < Vs; ++j)
      for (int64_t c = 0; c < C; ++c) {
        if (s * Vs + j < V) dwte_got.push_back(dslice.f32()[j * C + c]);
        else EXPECT_EQ(dslice.f32()[j * C + c], 0.f) << "padding row";
      }
    // Every slice gets the whole dwpe: sum over the batch.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c)
        EXPECT_FLOAT_EQ(dwpe.f32()[t * C + c], dout[size_t(t * C + c)] + dout[size_t((T + t) * C + c)]);
  }
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_FLOAT_EQ(float(sum[size_t(bt * C + c)]), wte[size_t(tok[size_t(bt)] * C + c)] + wpe[size_t((bt % T) * C + c)]);
  std::vector<float> dwte_want(size_t(V * C), 0.f);
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = 0; c < C; ++c) dwte_want[size_t(tok[size_t(bt)] * C + c)] += dout[size_t(bt * C + c)];
  EXPECT_EQ(dwte_got, dwte_want);

  // An id past V is an error, also where a slice's padding rows would cover it.
  Tensor bad = ids({0, 13, 1, 2, 3, 4}, {B, T}), out = zeros({B, T, C}), slice = zeros({Vs, C});
  EXPECT_THROW(ops.encoder_slice_forward(out, bad, slice, nullptr, 2 * Vs, V), Error);
  Tensor stats = zeros({3, B * T}), logits = zeros({B * T, Vs});
  EXPECT_THROW(ops.cross_entropy_slice_stats(stats, logits, bad.view({B * T}), 2 * Vs, V), Error);
}

}  // namespace
}  // namespace gpt
