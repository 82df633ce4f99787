// The mixture-of-experts layer (core/layers/moe.h) on CUDA against the same layer on the
// CPU (label `gpu`; skips without a GPU): the same parameters (ParamStore::init depends on
// the seed and names only), the same input and output gradient, fp32. Top-2 of 4 experts
// with capacity drops, a shared expert and both auxiliary losses; C = 40 (no multiple of
// 32). Checked: the routing decisions (made on the host from each device's logits), the
// output, the auxiliary losses, d(x) and every parameter gradient, within 1e-4 of max
// |cpu| per tensor (a chain of fp32 GEMMs whose summation order differs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/layers/moe.h"
#include "core/ops.h"
#include "core/param_store.h"
#include "core/tensor.h"

namespace gpt {
namespace {

#define REQUIRE_GPU() \
  if (!device_available(Device::CUDA)) GTEST_SKIP() << "no CUDA device present"

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max |got - ref| / max |ref|.
double rel_error(const Tensor& got, const Tensor& ref) {
  const std::vector<float> g = to_host_f32(got), r = to_host_f32(ref);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    diff = std::max(diff, double(std::fabs(g[i] - r[i])));
    scale = std::max(scale, double(std::fabs(r[i])));
  }
  return diff / std::max(scale, 1e-30);
}

struct MoeRun {
  ParamStore store;
  std::unique_ptr<MoeLayer> layer;
  MoeActs acts;
  MoeScratch scratch;
  Tensor out, dx;

  MoeRun(Device device, const MoeConfig& cfg, int64_t C, const std::vector<float>& x_host,
      const std::vector<float>& dout_host, int64_t N, int64_t T) {
    layer = std::make_unique<MoeLayer>(store, "moe", C, cfg, 0.3f, 0.2f);
    store.materialize(device);
    store.init(7);
    store.zero_grads();
    Tensor x = empty({N, C}, DType::F32, device), dout = empty({N, C}, DType::F32, device);
    from_host_f32(x, x_host.data());
    from_host_f32(dout, dout_host.data());
    out = empty({N, C}, DType::F32, device);
    dx = empty({N, C}, DType::F32, device);
    layer->forward(acts, out, x, T);
    layer->backward(acts, dx, dout, x, /*aux_grad_scale=*/0.5f, scratch);
    ops_for(device).synchronize();
  }
};

TEST(MoeCuda, ForwardBackwardMatchesCpu) {
  REQUIRE_GPU();
  MoeConfig cfg;
  cfg.experts = 4, cfg.top_k = 2, cfg.expert_hidden = 24, cfg.shared_experts = 1;
  cfg.capacity_factor = 1.0f, cfg.aux_loss = 0.01f, cfg.z_loss = 0.001f;
  const int64_t C = 40, B = 2, T = 16, N = B * T;
  const std::vector<float> x = randn(size_t(N * C), 1), dout = randn(size_t(N * C), 2);

  MoeRun cpu(Device::CPU, cfg, C, x, dout, N, T);
  MoeRun gpu(Device::CUDA, cfg, C, x, dout, N, T);

  const MoeRouting &rc = cpu.acts.routing, &rg = gpu.acts.routing;
  ASSERT_EQ(rg.expert, rc.expert) << "the two devices' logits routed differently";
  ASSERT_EQ(rg.row, rc.row);
  EXPECT_GT(cpu.layer->last_stats().dropped, 0) << "the case should exercise capacity drops";
  EXPECT_NEAR(rg.aux_loss, rc.aux_loss, 1e-5 * std::max(1.f, std::fabs(rc.aux_loss)));
  EXPECT_NEAR(rg.z_loss, rc.z_loss, 1e-5 * std::max(1.f, std::fabs(rc.z_loss)));

  constexpr double kTol = 1e-4;
  EXPECT_LE(rel_error(gpu.out, cpu.out), kTol) << "out";
  EXPECT_LE(rel_error(gpu.dx, cpu.dx), kTol) << "dx";
  for (int i = 0; i < cpu.store.size(); ++i)
    EXPECT_LE(rel_error(gpu.store.at(i).grad, cpu.store.at(i).grad), kTol) << cpu.store.at(i).name;
}

}  // namespace
}  // namespace gpt
