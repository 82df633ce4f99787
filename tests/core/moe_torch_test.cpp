// The mixture-of-experts layer (core/layers/moe.h) against an independent PyTorch version
// (tests/torch_ref/make_moe_reference.py, float64 autograd), written at test time by a
// CTest fixture: three cases (top-2 with capacity drops on an awkward shape, dropless
// top-2 with shared experts, renormalisation and two groups per sequence, top-1 with
// drops and a shared expert). Per case: the output, both auxiliary losses, d(x) and every
// parameter gradient within 1e-5 of PyTorch (per tensor, max |ours - torch| / max |torch|),
// and the kept counts per expert and the dropped count exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/relative_error.h"
#include "core/checkpoint/hdf5_file.h"
#include "core/layers/moe.h"

namespace gpt {
namespace {

constexpr double kTolerance = 1e-5;

class MoeVsTorch : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(path_))
        << path_ << " is missing: run through `ctest -L torch`, whose fixture generates it";
    r_ = std::make_unique<CheckpointReader>(path_);
  }
  Tensor load(const std::string& name) {
    Tensor t = empty(r_->shape(name));
    r_->read(name, t);
    return t;
  }
  float scalar(const std::string& name) { return load(name).f32()[0]; }
  int64_t attr(const std::string& name) { return r_->attr_int(name); }
  void expect_close(const Tensor& ours, const std::string& ref_name) {
    std::vector<float> a = to_host_f32(ours), b = to_host_f32(load(ref_name));
    ASSERT_EQ(a.size(), b.size()) << ref_name;
    const double err = test::max_relative_error(a, b);
    std::printf("  %-32s rel err %.3e\n", ref_name.c_str(), err);
    EXPECT_LE(err, kTolerance) << ref_name << " differs from PyTorch";
  }

 private:
  std::string path_ = std::string(TORCH_REF_DIR) + "/moe.h5";
  std::unique_ptr<CheckpointReader> r_;
};

TEST_P(MoeVsTorch, OutputLossesCountsAndEveryGradient) {
  const std::string c = GetParam(), p = c + ".";
  MoeConfig cfg;
  cfg.experts = attr(p + "E"), cfg.top_k = attr(p + "k"), cfg.expert_hidden = attr(p + "H");
  cfg.shared_experts = attr(p + "S"), cfg.group_tokens = attr(p + "group_tokens");
  cfg.renormalize = attr(p + "renormalize") != 0;
  cfg.capacity_factor = scalar(p + "capacity_factor");
  cfg.aux_loss = scalar(p + "aux_loss"), cfg.z_loss = scalar(p + "z_loss");
  const int64_t C = attr(p + "C"), T = attr(p + "T");

  ParamStore store;
  MoeLayer layer(store, c, C, cfg, 0.02f, 0.02f);  // the reference's values replace the init
  store.materialize(Device::CPU);
  for (int i = 0; i < store.size(); ++i) {
    Param& prm = store.at(i);
    ASSERT_EQ(load(prm.name).shape, prm.shape) << prm.name;
    copy_(prm.value, load(prm.name));
  }
  store.zero_grads();

  Tensor x = load(p + "x"), dout = load(p + "dout");
  // NaN-filled: an element the layer fails to write shows up.
  Tensor out = empty(x.shape), dx = empty(x.shape);
  std::fill(out.f32(), out.f32() + out.numel(), std::nanf(""));
  std::fill(dx.f32(), dx.f32() + dx.numel(), std::nanf(""));
  MoeActs acts;
  MoeScratch scratch;
  layer.forward(acts, out, x, T);
  layer.backward(acts, dx, dout, x, scalar(p + "aux_grad_scale"), scratch);

  expect_close(out, p + "out");
  const double aux = scalar(p + "aux_loss_value"), z = scalar(p + "z_loss_value");
  std::printf("  %-32s %.8g vs %.8g\n  %-32s %.8g vs %.8g\n", "aux loss", acts.routing.aux_loss, aux,
              "z loss", acts.routing.z_loss, z);
  EXPECT_LE(std::fabs(acts.routing.aux_loss - aux), kTolerance * std::fabs(aux)) << "aux loss";
  EXPECT_LE(std::fabs(acts.routing.z_loss - z), kTolerance * std::fabs(z)) << "z loss";
  const Tensor counts = load(p + "tokens_per_expert");
  const MoeStats& stats = layer.last_stats();
  ASSERT_EQ(int64_t(stats.tokens_per_expert.size()), counts.numel());
  for (int64_t e = 0; e < counts.numel(); ++e)
    EXPECT_EQ(stats.tokens_per_expert[size_t(e)], int64_t(counts.f32()[e])) << "expert " << e;
  EXPECT_EQ(stats.dropped, int64_t(scalar(p + "dropped")));

  expect_close(dx, p + "dx");
  for (int i = 0; i < store.size(); ++i) expect_close(store.at(i).grad, "grad/" + store.at(i).name);
}

INSTANTIATE_TEST_SUITE_P(Cases, MoeVsTorch, ::testing::Values("drops", "dropless", "top1"));

}  // namespace
}  // namespace gpt
