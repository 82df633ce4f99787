// The LLaMA family's CPU ops against PyTorch (benchmarks/torch_llama_ops.py), forward and
// backward, each on two shapes, the second awkward (odd C, HS 10 and 15, T 19, F 37,
// a RoPE position offset), and attention at grouped-query (6 query heads on 2 kv
// heads), multi-query (1) and multi-head (6) ends. The reference is written at test time
// by tests/torch_ref/make_llama_ops_reference.py (CTest fixture), its inputs
// bf16-representable, so each op also runs with bf16 activations on the same inputs.
//
// Tolerance: per tensor, max|ours - torch| / max|torch| <= 1e-5 in f32; 1e-2 in bf16
// (outputs rounded to bf16 once, 2^-9 relative, plus what bf16 intermediates add).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/relative_error.h"
#include "core/checkpoint/hdf5_file.h"
#include "core/ops.h"

namespace gpt {
namespace {

double tolerance(DType dt) { return dt == DType::F32 ? 1e-5 : 1e-2; }

class LlamaOpsVsTorch : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(path_))
        << path_ << " is missing: run through `ctest -L torch`, whose fixture generates it";
    r_ = std::make_unique<CheckpointReader>(path_);
  }
  int64_t attr(const std::string& name) { return r_->attr_int(name); }
  // A reference tensor in dtype dt (its values are bf16-representable: exact either way).
  Tensor load(const std::string& name, DType dt = DType::F32) {
    Tensor f = empty(r_->shape(name));
    r_->read(name, f);
    if (dt == DType::F32) return f;
    Tensor t = empty(f.shape, dt);
    ops.convert(t, f);
    return t;
  }
  Tensor filled(const Shape& shape, DType dt, float v) {
    Tensor f = empty(shape);
    std::fill(f.f32(), f.f32() + f.numel(), v);
    Tensor t = empty(shape, dt);
    ops.convert(t, f);
    return t;
  }
  // For outputs an op overwrites: NaN, so an element it fails to write shows up.
  Tensor poisoned(const Shape& shape, DType dt) { return filled(shape, dt, std::nanf("")); }
  void expect_close(const Tensor& ours, const std::string& ref_name, DType dt) {
    std::vector<float> a = to_host_f32(ours), b = to_host_f32(load(ref_name));
    ASSERT_EQ(a.size(), b.size()) << ref_name;
    const double err = test::max_relative_error(a, b);
    std::printf("  %-24s %-4s rel err %.3e\n", ref_name.c_str(), dtype_name(dt), err);
    EXPECT_LE(err, tolerance(dt)) << ref_name << " (" << dtype_name(dt)
                                           << ") differs from PyTorch";
  }

  const Ops& ops = cpu_ops();
  const DType kDtypes[2] = {DType::F32, DType::BF16};

 private:
  std::string path_ = std::string(TORCH_REF_DIR) + "/llama_ops.h5";
  std::unique_ptr<CheckpointReader> r_;
};

TEST_F(LlamaOpsVsTorch, RmsNorm) {
  for (std::string s : {"small", "awkward"})
    for (DType dt : kDtypes) {
      const std::string p = "rms." + s + ".";
      const float eps = float(attr(p + "eps_e6")) * 1e-6f;
      Tensor inp = load(p + "inp", dt), w = load(p + "weight");
      const int64_t N = inp.dim(0);
      Tensor out = poisoned(inp.shape, dt), rstd = poisoned({N}, DType::F32);
      ops.rmsnorm_forward(out, rstd, inp, w, eps);
      expect_close(out, p + "out", dt);
      // Backward accumulates: from zeros, dinp and dweight are the gradients.
      Tensor dinp = filled(inp.shape, dt, 0.f), dw = filled(w.shape, DType::F32, 0.f);
      ops.rmsnorm_backward(dinp, dw, load(p + "dout", dt), inp, w, rstd);
      expect_close(dinp, p + "dinp", dt);
      expect_close(dw, p + "dweight", dt);
      // The fused residual add: sum = a + b (exact in f32), then the same RMSNorm.
      Tensor sum = poisoned(inp.shape, dt), rout = poisoned(inp.shape, dt);
      ops.residual_rmsnorm_forward(sum, rout, rstd, load(p + "a", dt), load(p + "b", dt), w, eps);
      expect_close(sum, p + "inp", dt);
      expect_close(rout, p + "out", dt);
    }
}

TEST_F(LlamaOpsVsTorch, Rope) {
  for (std::string s : {"small", "awkward"})
    for (DType dt : kDtypes) {
      const std::string p = "rope." + s + ".";
      const RopeArgs args{int(attr(p + "NH")), int(attr(p + "NKV")), float(attr(p + "theta")),
                          attr(p + "pos")};
      Tensor qkv = load(p + "qkv", dt);
      Tensor out = poisoned(qkv.shape, dt), dqkv = poisoned(qkv.shape, dt);
      ops.rope_forward(out, qkv, args);
      expect_close(out, p + "out", dt);
      ops.rope_backward(dqkv, load(p + "dout", dt), args);
      expect_close(dqkv, p + "dqkv", dt);
    }
}

TEST_F(LlamaOpsVsTorch, Swiglu) {
  for (std::string s : {"small", "awkward"})
    for (DType dt : kDtypes) {
      const std::string p = "swiglu." + s + ".";
      Tensor inp = load(p + "inp", dt), dout = load(p + "dout", dt);
      Tensor out = poisoned(dout.shape, dt), dinp = poisoned(inp.shape, dt);
      ops.swiglu_forward(out, inp);
      expect_close(out, p + "out", dt);
      ops.swiglu_backward(dinp, inp, dout);
      expect_close(dinp, p + "dinp", dt);
    }
}

TEST_F(LlamaOpsVsTorch, GroupedQueryAttention) {
  for (std::string s : {"small", "gqa", "mqa", "mha"})
    for (DType dt : kDtypes) {
      const std::string p = "attn." + s + ".";
      const int NH = int(attr(p + "NH")), NKV = int(attr(p + "NKV"));
      Tensor qkv = load(p + "qkv", dt), dout = load(p + "dout", dt);
      const int64_t B = qkv.dim(0), T = qkv.dim(1);
      Tensor out = poisoned(dout.shape, dt), lse = poisoned({B, NH, T}, DType::F32);
      Tensor dqkv = poisoned(qkv.shape, dt);
      ops.attention_gqa_forward(out, lse, qkv, NH, NKV);
      expect_close(out, p + "out", dt);
      ops.attention_gqa_backward(dqkv, dout, out, lse, qkv, NH, NKV);
      expect_close(dqkv, p + "dqkv", dt);
      if (NKV == NH) {  // multi-head: the table's plain attention entries are the same op
        Tensor out2 = poisoned(dout.shape, dt), dqkv2 = poisoned(qkv.shape, dt);
        ops.attention_forward(out2, lse, qkv, NH);
        expect_close(out2, p + "out", dt);
        ops.attention_backward(dqkv2, dout, out2, lse, qkv, NH);
        expect_close(dqkv2, p + "dqkv", dt);
      }
    }
}

}  // namespace
}  // namespace gpt
