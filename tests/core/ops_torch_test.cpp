// CPU ops against PyTorch, one op at a time (forward and backward), on random inputs
// in awkward shapes (head size 15, T=19, V=509). The reference is written at test time
// by tests/torch_ref/make_ops_reference.py (CTest fixture). When the model-level
// equality test fails, these say which op is at fault.
//
// Tolerance: per tensor, max|ours - torch| / max|torch| <= 1e-5 (as the model test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/relative_error.h"
#include "core/checkpoint/hdf5_file.h"
#include "core/ops.h"

namespace gpt {
namespace {

constexpr double kRelTol = 1e-5;

class OpsVsTorch : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(path_))
        << path_ << " is missing: run through `ctest -L torch`, whose fixture generates it";
    r_ = std::make_unique<CheckpointReader>(path_);
    B = r_->attr_int("B"), T = r_->attr_int("T"), C = r_->attr_int("C");
    NH = int(r_->attr_int("NH")), V = r_->attr_int("V");
  }
  Tensor load(const std::string& name) {
    Tensor t = empty(r_->shape(name));
    r_->read(name, t);
    return t;
  }
  Tensor zeros_like(const Tensor& t) { return zeros(t.shape); }
  // For gradients an op overwrites: NaN everywhere, so a value it fails to write (or
  // adds to instead of writing) shows up.
  Tensor poisoned_like(const Tensor& t) {
    Tensor p = empty(t.shape);
    std::fill(p.f32(), p.f32() + p.numel(), std::nanf(""));
    return p;
  }
  void expect_close(const Tensor& ours, const std::string& ref_name) {
    std::vector<float> a = to_host_f32(ours), b = to_host_f32(load(ref_name));
    ASSERT_EQ(a.size(), b.size()) << ref_name;
    const double err = test::max_relative_error(a, b);
    std::printf("  %-12s rel err %.3e\n", ref_name.c_str(), err);
    EXPECT_LE(err, kRelTol) << ref_name << " differs from PyTorch";
  }

  const Ops& ops = cpu_ops();
  int64_t B = 0, T = 0, C = 0, V = 0;
  int NH = 0;

 private:
  std::string path_ = std::string(TORCH_REF_DIR) + "/ops.h5";
  std::unique_ptr<CheckpointReader> r_;
};

TEST_F(OpsVsTorch, AttentionOddHeadSize) {
  Tensor qkv = load("attn.qkv"), dout = load("attn.dout");
  Tensor out = zeros({B, T, C}), lse = zeros({B, int64_t(NH), T}), dqkv = poisoned_like(qkv);
  ops.attention_forward(out, lse, qkv, NH);
  expect_close(out, "attn.out");
  ops.attention_backward(dqkv, dout, out, lse, qkv, NH);
  expect_close(dqkv, "attn.dqkv");
}

TEST_F(OpsVsTorch, LayerNormLargeMean) {
  Tensor inp = load("ln.inp"), w = load("ln.weight"), b = load("ln.bias"), dout = load("ln.dout");
  const int64_t N = inp.dim(0);
  Tensor out = zeros_like(inp), mean = zeros({N}), rstd = zeros({N});
  ops.layernorm_forward(out, mean, rstd, inp, w, b);
  expect_close(out, "ln.out");
  Tensor dinp = zeros_like(inp), dw = zeros_like(w), db = zeros_like(b);
  ops.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd);
  expect_close(dinp, "ln.dinp");
  expect_close(dw, "ln.dweight");
  expect_close(db, "ln.dbias");
}

TEST_F(OpsVsTorch, GeluTanh) {
  Tensor inp = load("gelu.inp"), dout = load("gelu.dout");
  Tensor out = zeros_like(inp), dinp = poisoned_like(inp);
  ops.gelu_forward(out, inp);
  expect_close(out, "gelu.out");
  ops.gelu_backward(dinp, inp, dout);
  expect_close(dinp, "gelu.dinp");
}

TEST_F(OpsVsTorch, CrossEntropyWithIgnoredTargets) {
  Tensor logits = load("ce.logits");
  const int64_t N = logits.dim(0);
  std::vector<float> tf = to_host_f32(load("ce.targets"));
  Tensor targets = empty({N}, DType::I32);
  for (int64_t n = 0; n < N; ++n) targets.i32()[n] = int32_t(tf[size_t(n)]);
  Tensor losses = zeros({N}), fused_losses = zeros({N});
  ops.cross_entropy_forward(losses, logits, targets);
  expect_close(losses, "ce.losses");
  // The fused classifier: the same losses, and the logits become their gradient.
  ops.cross_entropy_forward_backward(fused_losses, logits, targets, 1.f / float(N));
  expect_close(fused_losses, "ce.losses");
  expect_close(logits, "ce.dlogits");
}

}  // namespace
}  // namespace gpt
