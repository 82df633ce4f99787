// Expert parallelism at the layer, against the single-device layer. Every rank runs the
// MoE layer twice on its own tokens: whole (all E experts here: the reference) and split
// over the world as one expert-parallel group (E / P experts here, the rest reached by
// all-to-all), both from the same seed, so the split layer's parameters are slices of the
// reference's by global expert index. Then:
//  - outputs, input gradients, router gradients and both auxiliary losses equal the
//    reference's (only the order of sums inside the expert GEMMs differs);
//  - each expert's gradients on its owner equal the sum over ranks of the reference
//    gradients of that expert (every rank's tokens reached it);
//  - the "ep" group's all-to-all bytes equal the count from the routing decisions:
//    rows a rank sends to other ranks' experts plus rows it receives for its own, times
//    C floats, forward (inputs there, outputs back) and backward (output gradients there,
//    input gradients back), plus the per-expert counts exchanged once per forward;
//  - a second forward gives bit-identical outputs (no arrival-order dependence).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/layers/moe.h"
#include "core/rng.h"
#include "parallel/communicator.h"
#include "parallel/expert/ep_exchange.h"

namespace gpt::parallel {
namespace {

constexpr int64_t kC = 8, kH = 12, kB = 2, kT = 8, kE = 4;

struct Layer {
  ParamStore store;
  std::unique_ptr<MoeLayer> moe;
  MoeActs acts;
  MoeScratch scratch;
  Tensor out, dx;
  Layer(const MoeConfig& cfg, ExpertExchange* exchange) {
    moe = std::make_unique<MoeLayer>(store, "moe", kC, cfg, 0.3f, 0.3f, exchange);
    store.materialize(Device::CPU);
    store.init(11);
  }
  void run(const Tensor& x, const Tensor& dout) {
    ensure(out, x.shape, DType::F32, Device::CPU);
    ensure(dx, x.shape, DType::F32, Device::CPU);
    store.zero_grads();
    moe->forward(acts, out, x, kT);
    moe->backward(acts, dx, dout, x, 1.f, scratch);
  }
};

Tensor random_rows(uint64_t seed, float scale) {
  Tensor t = empty({kB * kT, kC});
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = scale * rng.normal();
  return t;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

struct Case {
  const char* name;
  int64_t top_k;
  float capacity_factor;
  int64_t shared;
};

class ExpertParallel : public ::testing::TestWithParam<Case> {};

TEST_P(ExpertParallel, EqualsTheWholeLayerAndMovesTheRoutedBytes) {
  const Case c = GetParam();
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
  const int P = comm->world_size(), me = comm->world_rank();
  ASSERT_EQ(kE % P, 0) << "run with 1, 2 or 4 ranks";
  std::vector<int> all;
  for (int r = 0; r < P; ++r) all.push_back(r);
  Group ep = comm->make_group("ep", {all});
  EpExchange exchange(*comm, ep);

  MoeConfig cfg;
  cfg.experts = kE, cfg.top_k = c.top_k, cfg.expert_hidden = kH, cfg.shared_experts = c.shared;
  cfg.capacity_factor = c.capacity_factor, cfg.aux_loss = 0.1f, cfg.z_loss = 0.01f;
  Layer whole(cfg, nullptr), split(cfg, &exchange);
  const int64_t L = kE / P;
  ASSERT_EQ(split.moe->local_experts(), L);
  ASSERT_EQ(split.moe->first_expert(), me * L);
  ASSERT_EQ(split.moe->fc->shape, (Shape{L, kH, kC}));

  const Tensor x = random_rows(100 + uint64_t(me), 1.f), dout = random_rows(200 + uint64_t(me), 0.1f);
  whole.run(x, dout);
  comm->traffic().reset();
  split.run(x, dout);
  const double moved = comm->traffic().get("ep", "all_to_all").bytes;

  const int64_t n = x.numel();
  EXPECT_LE(max_abs_diff(split.out.f32(), whole.out.f32(), n), 1e-6);
  EXPECT_LE(max_abs_diff(split.dx.f32(), whole.dx.f32(), n), 1e-6);
  EXPECT_LE(max_abs_diff(split.moe->router->grad.f32(), whole.moe->router->grad.f32(), kE * kC), 1e-6);
  EXPECT_EQ(split.acts.routing.aux_loss, whole.acts.routing.aux_loss);
  EXPECT_EQ(split.acts.routing.z_loss, whole.acts.routing.z_loss);
  if (c.shared > 0) {
    EXPECT_LE(max_abs_diff(split.moe->shared_fc->weight->grad.f32(), whole.moe->shared_fc->weight->grad.f32(),
                           whole.moe->shared_fc->weight->numel()),
              1e-6);
  }

  // Every rank's tokens reached the owner: the reference's expert gradients summed over ranks.
  const std::pair<Param*, Param*> grads[] = {{whole.moe->fc, split.moe->fc},
                                             {whole.moe->fc_bias, split.moe->fc_bias},
                                             {whole.moe->proj, split.moe->proj},
                                             {whole.moe->proj_bias, split.moe->proj_bias}};
  for (const auto& [w, s] : grads) {
    Tensor summed = empty(w->grad.shape);
    copy_(summed, w->grad);
    comm->allreduce(summed, comm->world_group()).wait();
    const int64_t per_expert = w->numel() / kE;
    EXPECT_LE(max_abs_diff(s->grad.f32(), summed.f32() + me * L * per_expert, L * per_expert), 1e-5) << w->name;
  }

  // The traffic, from the routing decisions: kept assignments whose expert another rank owns.
  const MoeRouting& r = split.acts.routing;
  std::vector<float> kept(size_t(kE), 0.f);  // this rank's kept rows per expert
  for (size_t i = 0; i < r.expert.size(); ++i)
    if (r.row[i] >= 0) kept[size_t(r.expert[i])] += 1.f;
  Tensor all_kept = empty({int64_t(P) * kE});
  std::copy(kept.begin(), kept.end(), all_kept.f32() + me * kE);
  std::vector<int64_t> counts(size_t(P), kE);
  comm->allgather(all_kept, counts, comm->world_group()).wait();
  double sent = 0, received = 0;
  for (int src = 0; src < P; ++src)
    for (int64_t e = 0; e < kE; ++e) {
      const int owner = int(e / L);
      const double rows = all_kept.f32()[src * kE + e];
      if (src == me && owner != me) sent += rows;
      if (src != me && owner == me) received += rows;
    }
  const double expected = 2.0 * (sent + received) * kC * sizeof(float) + double(P - 1) * L * sizeof(int32_t);
  if (me == 0)
    std::printf("  %s, P %d: rank 0 sent %.0f rows, received %.0f; all-to-all %.0f bytes, expected %.0f\n", c.name, P,
                sent, received, moved, expected);
  EXPECT_EQ(moved, expected);
  if (P > 1) {
    EXPECT_GT(sent + received, 0) << "nothing crossed ranks: the test would not test the exchange";
  }

  // Determinism: the same forward again, bit for bit.
  std::vector<float> first(split.out.f32(), split.out.f32() + n);
  split.run(x, dout);
  EXPECT_EQ(std::vector<float>(split.out.f32(), split.out.f32() + n), first);
}

INSTANTIATE_TEST_SUITE_P(Moe, ExpertParallel,
                         ::testing::Values(Case{"top1_dropless", 1, 0.f, 0}, Case{"top2_capacity", 2, 1.0f, 0},
                                           Case{"top2_capacity_shared", 2, 1.25f, 1}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace gpt::parallel
