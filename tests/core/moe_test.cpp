// The mixture-of-experts layer (core/layers/moe.h) on cases small enough to work out by
// hand: capacity, which assignments are dropped and in what order, the rows each kept
// assignment gets, the output and the auxiliary losses; bad configurations; and that
// forward + backward is bit-identical run to run with buffers allocated once.
// Equality with PyTorch on larger shapes is tests/core/moe_torch_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/layers/moe.h"
#include "core/rng.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

TEST(MoeCapacity, CeilOfFactorTimesGroupTimesKOverExperts) {
  auto cap = [](float cf, int64_t E, int64_t k, int64_t G) {
    MoeConfig c;
    c.experts = E, c.top_k = k, c.capacity_factor = cf;
    return c.capacity(G);
  };
  EXPECT_EQ(cap(1.f, 4, 2, 7), 4);     // 3.5 rounds up
  EXPECT_EQ(cap(1.25f, 8, 1, 8), 2);   // 1.25
  EXPECT_EQ(cap(0.5f, 2, 1, 4), 1);
  EXPECT_EQ(cap(2.f, 4, 2, 8), 8);     // exact
  EXPECT_EQ(cap(0.f, 4, 2, 7), -1);    // dropless
}

// C = 2, E = 2, H = 1, no shared experts, coefficients for both losses. The router
// weight is the identity, so token n's logits are x[n]; expert e's fc picks channel e
// and its proj copies the hidden unit to both channels: expert_e(x) = gelu(x_e) (1, 1).
struct TinyMoe {
  ParamStore store;
  std::unique_ptr<MoeLayer> layer;
  MoeActs acts;
  Tensor out;

  TinyMoe(int64_t k, float cf) {
    MoeConfig cfg;
    cfg.experts = 2, cfg.top_k = k, cfg.expert_hidden = 1, cfg.capacity_factor = cf;
    cfg.aux_loss = 0.5f, cfg.z_loss = 0.25f;
    layer = std::make_unique<MoeLayer>(store, "moe", 2, cfg, 0.02f, 0.02f);
    store.materialize(Device::CPU);
    store.init(1);
    const float router[4] = {1, 0, 0, 1}, fc[4] = {1, 0, 0, 1}, proj[4] = {1, 1, 1, 1};
    std::copy_n(router, 4, layer->router->value.f32());
    std::copy_n(fc, 4, layer->fc->value.f32());
    std::copy_n(proj, 4, layer->proj->value.f32());
    zero_(layer->fc_bias->value);
    zero_(layer->proj_bias->value);
  }
  void forward(const std::vector<float>& x, int64_t T) {
    Tensor xt = empty({int64_t(x.size()) / 2, 2});
    std::copy(x.begin(), x.end(), xt.f32());
    ensure(out, xt.shape, DType::F32, Device::CPU);
    layer->forward(acts, out, xt, T);
  }
};

double gelu(double v) { return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

TEST(MoeRouting, TopOneDropsLaterTokensOfAFullExpert) {
  TinyMoe m(/*k=*/1, /*cf=*/0.5f);  // capacity ceil(0.5 * 4 * 1 / 2) = 1 per expert
  // Logits are the tokens: experts 0, 0, 1, 0.
  m.forward({2, 0, 1, 0, 0, 3, 5, 0}, /*T=*/4);
  const MoeRouting& r = m.acts.routing;
  EXPECT_EQ(r.expert, (std::vector<int32_t>{0, 0, 1, 0}));
  // Expert 0 keeps token 0 and drops 1 and 3; expert 1 keeps token 2, in row 1.
  EXPECT_EQ(r.row, (std::vector<int32_t>{0, -1, 1, -1}));
  EXPECT_EQ(r.row_token, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(m.layer->last_stats().tokens_per_expert, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(m.layer->last_stats().dropped, 2);
  EXPECT_EQ(m.layer->last_stats().assignments, 4);
  // The experts' buffers hold what capacity allows: 1 group x 2 experts x 1 slot.
  EXPECT_EQ(m.acts.expert_in.dim(0), 2);
  // A dropped token's output is exactly zero (no shared expert); a kept one is
  // prob * gelu(x_e) in both channels.
  const float* o = m.out.f32();
  const double y0 = sigmoid(2) * gelu(2), y2 = sigmoid(3) * gelu(3);
  EXPECT_NEAR(o[0], y0, 1e-6);
  EXPECT_NEAR(o[1], y0, 1e-6);
  EXPECT_EQ(o[2], 0.f);
  EXPECT_EQ(o[3], 0.f);
  EXPECT_NEAR(o[4], y2, 1e-6);
  EXPECT_NEAR(o[5], y2, 1e-6);
  EXPECT_EQ(o[6], 0.f);
  EXPECT_EQ(o[7], 0.f);
  // Load balance: f = (3/4, 1/4), P the mean probs; z: the mean of lse^2.
  const double d[4] = {2, 1, -3, 5};  // logit 0 - logit 1 per token
  double p0 = 0, z = 0;
  for (double v : d) p0 += sigmoid(v) / 4;
  const double lse[4] = {std::log(std::exp(2.0) + 1), std::log(std::exp(1.0) + 1),
                         std::log(1 + std::exp(3.0)), std::log(std::exp(5.0) + 1)};
  for (double l : lse) z += l * l / 4;
  const double balance = 2 * (0.75 * p0 + 0.25 * (1 - p0));
  EXPECT_NEAR(r.load_balance, balance, 1e-6);
  EXPECT_NEAR(r.aux_loss, 0.5 * balance, 1e-6);
  EXPECT_NEAR(r.router_z, z, 1e-5);
  EXPECT_NEAR(r.z_loss, 0.25 * z, 1e-5);
}

TEST(MoeRouting, CapacityIsPerGroup) {
  TinyMoe m(/*k=*/1, /*cf=*/0.5f);
  // Groups of T = 2 tokens: capacity ceil(0.5 * 2 / 2) = 1 per group, and token 3 finds
  // expert 0 empty again in the second group.
  m.forward({2, 0, 1, 0, 0, 3, 5, 0}, /*T=*/2);
  EXPECT_EQ(m.acts.routing.row, (std::vector<int32_t>{0, -1, 2, 1}));
  EXPECT_EQ(m.acts.routing.row_token, (std::vector<int32_t>{0, 3, 2}));
  EXPECT_EQ(m.layer->last_stats().tokens_per_expert, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(m.layer->last_stats().dropped, 1);
}

TEST(MoeRouting, FirstChoicesClaimSlotsBeforeSecondChoices) {
  TinyMoe m(/*k=*/2, /*cf=*/0.5f);  // capacity ceil(0.5 * 4 * 2 / 2) = 2 per expert
  // First choices 1, 0, 0, 0; second choices 0, 1, 1, 1.
  m.forward({0, 1, 1, 0, 2, 0, 3, 0}, /*T=*/4);
  const MoeRouting& r = m.acts.routing;
  EXPECT_EQ(r.expert, (std::vector<int32_t>{1, 0, 0, 1, 0, 1, 0, 1}));
  // Expert 0: tokens 1 and 2's first choices fill it; token 3's first choice and token
  // 0's second are dropped. Expert 1: token 0's first choice, then token 1's second.
  // (Token order without the choice priority would keep token 0's second choice.)
  // Rows: expert 0 has tokens 1, 2 (rows 0, 1); expert 1 tokens 0, 1 (rows 2, 3).
  EXPECT_EQ(r.row, (std::vector<int32_t>{2, -1, 0, 3, 1, -1, -1, -1}));
  EXPECT_EQ(r.row_token, (std::vector<int32_t>{1, 2, 0, 1}));
  EXPECT_EQ(m.layer->last_stats().tokens_per_expert, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(m.layer->last_stats().dropped, 4);
}

TEST(MoeRouting, TiesGoToTheLowerExpert) {
  TinyMoe m(/*k=*/1, /*cf=*/0.f);
  m.forward({1, 1, -2, -2}, /*T=*/2);
  EXPECT_EQ(m.acts.routing.expert, (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(m.layer->last_stats().dropped, 0);
}

TEST(MoeConfigCheck, BadValuesNameTheirKey) {
  auto err = [](auto edit) {
    MoeConfig c;
    c.experts = 4, c.top_k = 2, c.expert_hidden = 8;
    edit(c);
    return error_of([&] { c.validate(); });
  };
  EXPECT_EQ(err([](MoeConfig&) {}), "");
  EXPECT_NE(err([](MoeConfig& c) { c.top_k = 5; }).find("moe.top_k"), std::string::npos);
  EXPECT_NE(err([](MoeConfig& c) { c.experts = 0; }).find("moe.experts"), std::string::npos);
  EXPECT_NE(err([](MoeConfig& c) { c.capacity_factor = -1; }).find("moe.capacity_factor"),
            std::string::npos);
  EXPECT_NE(err([](MoeConfig& c) { c.expert_hidden = 0; }).find("moe.expert_hidden"), std::string::npos);
  // Tokens that do not split into groups.
  MoeConfig c;
  c.experts = 2, c.expert_hidden = 1, c.group_tokens = 3;
  ParamStore store;
  MoeLayer layer(store, "moe", 2, c, 0.02f, 0.02f);
  store.materialize(Device::CPU);
  MoeActs acts;
  Tensor x = zeros({4, 2}), out = zeros({4, 2});
  EXPECT_NE(error_of([&] { layer.forward(acts, out, x, 4); }).find("moe.group_tokens"), std::string::npos);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Drops, shared experts, renormalisation and both losses on: two runs, the same bits.
TEST(MoeLayerDeterminism, ForwardBackwardTwiceGivesTheSameBits) {
  MoeConfig cfg;
  cfg.experts = 6, cfg.top_k = 2, cfg.expert_hidden = 20, cfg.shared_experts = 1;
  cfg.capacity_factor = 1.f, cfg.aux_loss = 0.1f, cfg.z_loss = 0.01f, cfg.renormalize = true;
  const int64_t B = 3, T = 11, C = 16, N = B * T;
  ParamStore store;
  MoeLayer layer(store, "moe", C, cfg, 0.3f, 0.1f);
  store.materialize(Device::CPU);
  store.init(7);
  Tensor x = empty({N, C}), dout = empty({N, C});
  Rng rng(3);
  for (int64_t i = 0; i < N * C; ++i) x.f32()[i] = rng.normal(), dout.f32()[i] = rng.normal();

  MoeActs acts;
  MoeScratch scratch;
  Tensor out = empty({N, C}), dx = empty({N, C});
  std::vector<Tensor> results;
  std::vector<float> losses;
  for (int run = 0; run < 2; ++run) {
    store.zero_grads();
    layer.forward(acts, out, x, T);
    layer.backward(acts, dx, dout, x, 0.5f, scratch);
    results.push_back(to_device(out, Device::CPU));
    results.push_back(to_device(dx, Device::CPU));
    results.push_back(to_device(store.flat_grads(), Device::CPU));
    losses.push_back(acts.routing.aux_loss);
    losses.push_back(acts.routing.z_loss);
  }
  EXPECT_GT(layer.last_stats().dropped, 0) << "the case should drop assignments";
  EXPECT_TRUE(same_bits(results[0], results[3])) << "out";
  EXPECT_TRUE(same_bits(results[1], results[4])) << "dx";
  EXPECT_TRUE(same_bits(results[2], results[5])) << "parameter gradients";
  EXPECT_EQ(std::memcmp(&losses[0], &losses[2], 2 * sizeof(float)), 0) << "auxiliary losses";

  // Other tokens load the experts differently; the buffers stay where they are.
  const void* buffers[3] = {acts.expert_in.raw(), acts.run.act.raw(), scratch.d_run_pre.raw()};
  const std::vector<int64_t> load = layer.last_stats().tokens_per_expert;
  for (int64_t i = 0; i < N * C; ++i) x.f32()[i] = 2.f * rng.normal();
  layer.forward(acts, out, x, T);
  layer.backward(acts, dx, dout, x, 0.5f, scratch);
  EXPECT_NE(layer.last_stats().tokens_per_expert, load);
  EXPECT_EQ(acts.expert_in.raw(), buffers[0]) << "the experts' buffers were reallocated";
  EXPECT_EQ(acts.run.act.raw(), buffers[1]);
  EXPECT_EQ(scratch.d_run_pre.raw(), buffers[2]);
}

}  // namespace
}  // namespace gpt
