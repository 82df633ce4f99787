// Every CUDA op, forward and backward, against the CPU op on the same random inputs.
//
// Error measure: max |gpu - cpu| / max |cpu| over the tensor (relative to the tensor's
// scale: per-element ratios are meaningless where sums cancel to ~0). Tolerance 1e-5 for
// fp32, 1e-2 for bf16 (inputs are rounded to bf16 first, so both sides see the same
// values). Outputs that an op overwrites are poisoned with NaN first; outputs that it
// accumulates into start from a random base, the same on both sides.
// Needs a GPU; without one every test skips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace cuda {
bool set_attention_kernel_for_tests(bool simple);  // core/cuda/attention.cu
bool set_attention_mma_for_tests(bool mma);        // core/cuda/attention.cu
bool set_gelu_epilogue_for_tests(bool on);         // core/cuda/matmul.cu
int64_t fused_gelu_gemms_for_tests();              // core/cuda/matmul.cu
}
namespace {

#define REQUIRE_GPU() \
  if (!device_available(Device::CUDA)) GTEST_SKIP() << "no CUDA device present"

using Vec = std::vector<float>;
const DType kFloatTypes[] = {DType::F32, DType::BF16};

Vec randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  Vec v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Round through the storage type so the CPU reference sees exactly what the GPU sees.
Vec as_stored(Vec v, DType dt) {
  if (dt == DType::BF16)
    for (float& x : v) x = bf16_to_float(float_to_bf16(x));
  return v;
}

Tensor cpu_tensor(const Vec& v, Shape s) {
  Tensor t = empty(std::move(s), DType::F32, Device::CPU);
  std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

Tensor gpu_tensor(const Vec& v, Shape s, DType dt) {
  Tensor t = empty(std::move(s), dt, Device::CUDA);
  from_host_f32(t, v.data());
  return t;
}

Tensor gpu_poison(Shape s, DType dt) {
  Tensor t = empty(s, dt, Device::CUDA);
  Vec nan(size_t(t.numel()), std::numeric_limits<float>::quiet_NaN());
  from_host_f32(t, nan.data());
  return t;
}

Tensor ints(const std::vector<int32_t>& v, Shape s, Device dev) {
  Tensor host = empty(s, DType::I32, Device::CPU);
  std::memcpy(host.raw(), v.data(), v.size() * 4);
  return dev == Device::CPU ? host : to_device(host, dev);
}

std::vector<int32_t> random_ids(size_t n, int V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, V - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rel_err(const Vec& g, const Vec& c) {
  EXPECT_EQ(g.size(), c.size());
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < c.size() && i < g.size(); ++i) {
    // Non-finite on either side fails: a NaN reference must not hide a NaN result.
    if (!std::isfinite(g[i]) || !std::isfinite(c[i])) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, double(std::fabs(g[i] - c[i])));
    max_ref = std::max(max_ref, double(std::fabs(c[i])));
  }
  return max_diff / std::max(max_ref, 1e-30);
}
double rel_err(const Tensor& gpu, const Tensor& cpu) {
  return rel_err(to_host_f32(gpu), to_host_f32(cpu));
}

double tol(DType dt) { return dt == DType::F32 ? 1e-5 : 1e-2; }

#define EXPECT_CLOSE(gpu, cpu, dt) EXPECT_LE(rel_err(gpu, cpu), tol(dt)) << #gpu

bool bit_identical(const Tensor& a, const Tensor& b) {
  Tensor ha = to_device(a, Device::CPU), hb = to_device(b, Device::CPU);
  return a.nbytes() == b.nbytes() && std::memcmp(ha.raw(), hb.raw(), a.nbytes()) == 0;
}

const Ops& G() { return ops_for(Device::CUDA); }
const Ops& H() { return cpu_ops(); }

// ---- tests ----

TEST(CudaOps, EncoderForwardBackward) {
  REQUIRE_GPU();
  struct Case { int B, T, C, V; };
  for (Case k : {Case{2, 7, 12, 37}, Case{3, 64, 96, 1001}, Case{1, 1, 5, 3}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.B) + "x" + std::to_string(k.T) + "x" + std::to_string(k.C) +
                   " " + dtype_name(dt));
      const int maxT = k.T + 3;
      auto ids = random_ids(size_t(k.B * k.T), k.V, 1);
      Vec wte = as_stored(randn(size_t(k.V * k.C), 2), dt), wpe = as_stored(randn(size_t(maxT * k.C), 3), dt);
      Tensor out = gpu_poison({k.B, k.T, k.C}, dt), out_ref = empty({k.B, k.T, k.C});
      G().encoder_forward(out, ints(ids, {k.B, k.T}, Device::CUDA), gpu_tensor(wte, {k.V, k.C}, dt),
                          gpu_tensor(wpe, {maxT, k.C}, dt));
      H().encoder_forward(out_ref, ints(ids, {k.B, k.T}, Device::CPU), cpu_tensor(wte, {k.V, k.C}),
                          cpu_tensor(wpe, {maxT, k.C}));
      EXPECT_CLOSE(out, out_ref, dt);

      // Backward into fp32 gradients (the mixed-precision layout) from a random base.
      Vec dout = as_stored(randn(size_t(k.B * k.T * k.C), 4), dt);
      Vec dwte0 = randn(size_t(k.V * k.C), 5), dwpe0 = randn(size_t(maxT * k.C), 6);
      Tensor dwte = gpu_tensor(dwte0, {k.V, k.C}, DType::F32), dwpe = gpu_tensor(dwpe0, {maxT, k.C}, DType::F32);
      Tensor dwte_ref = cpu_tensor(dwte0, {k.V, k.C}), dwpe_ref = cpu_tensor(dwpe0, {maxT, k.C});
      G().encoder_backward(dwte, dwpe, gpu_tensor(dout, {k.B, k.T, k.C}, dt), ints(ids, {k.B, k.T}, Device::CUDA));
      H().encoder_backward(dwte_ref, dwpe_ref, cpu_tensor(dout, {k.B, k.T, k.C}), ints(ids, {k.B, k.T}, Device::CPU));
      EXPECT_CLOSE(dwte, dwte_ref, DType::F32);
      EXPECT_CLOSE(dwpe, dwpe_ref, DType::F32);
    }
  }
}


#define EXPECT_HAS(text, part)                               \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "'" << (text) << "' lacks '" << (part) << "'"

// The CUDA token-range checks do not wait for the device: the op only queues its check,
// and the next call that waits for the stream anyway (synchronize, copy_to_host,
// copy_from_host, sum_squares) throws, once, naming the op, the id, its position and V.
// Until then the kernels bound the ids: the bad row of out is zeros.
TEST(CudaOps, EncoderRejectsTokenOutsideVocabulary) {
  REQUIRE_GPU();
  Tensor out = empty({1, 3, 4}, DType::F32, Device::CUDA);
  Tensor wte = gpu_tensor(randn(20, 1), {5, 4}, DType::F32);
  Tensor wpe = zeros({3, 4}, DType::F32, Device::CUDA);
  const Tensor bad = ints({1, 7, 2}, {1, 3}, Device::CUDA);
  EXPECT_NO_THROW(G().encoder_forward(out, bad, wte, wpe)) << "the check only queues";
  const std::string what = error_of([] { G().synchronize(); });
  EXPECT_HAS(what, "encoder_forward");
  EXPECT_HAS(what, "token id 7 at position 1 is outside the vocabulary [0, 5)");
  EXPECT_HAS(what, "reported at synchronize");
  EXPECT_NO_THROW(G().synchronize()) << "reported once";
  const Vec host = to_host_f32(out);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(host[size_t(4 + c)], 0.f) << "the bad row is zeros";

  // Negative ids are bad too; the first bad position wins; copy_to_host reports it.
  G().encoder_forward(out, ints({2, -4, 9}, {1, 3}, Device::CUDA), wte, wpe);
  const std::string first = error_of([&] { (void)to_host_f32(out); });
  EXPECT_HAS(first, "token id -4 at position 1 is outside the vocabulary [0, 5)");
  EXPECT_HAS(first, "copy_to_host");

  // The backward with the same bad ids (run before the error arrives) touches no row of
  // dwte for them and still fills dwpe.
  Tensor dwte = zeros({5, 4}, DType::F32, Device::CUDA);
  Tensor dwpe = zeros({3, 4}, DType::F32, Device::CUDA);
  G().encoder_backward(dwte, dwpe, gpu_tensor(Vec(12, 1.f), {1, 3, 4}, DType::F32),
                       ints({2, -4, 9}, {1, 3}, Device::CUDA));
  const Vec dte = to_host_f32(dwte), dpe = to_host_f32(dwpe);
  for (int v = 0; v < 5; ++v)
    for (int c = 0; c < 4; ++c)
      EXPECT_EQ(dte[size_t(v * 4 + c)], v == 2 ? 1.f : 0.f) << "dwte[" << v << "][" << c << "]";
  for (float x : dpe) EXPECT_EQ(x, 1.f);
}

// More checks in flight than the context has slots for: the one that finds none free
// reads the others back first (and so throws for an earlier bad one there).
TEST(CudaOps, TokenChecksBeyondTheSlotsAreReadBackInOrder) {
  REQUIRE_GPU();
  Tensor out = empty({1, 3, 4}, DType::F32, Device::CUDA);
  Tensor wte = zeros({5, 4}, DType::F32, Device::CUDA), wpe = zeros({3, 4}, DType::F32, Device::CUDA);
  const Tensor good = ints({1, 4, 0}, {1, 3}, Device::CUDA);
  const Tensor bad = ints({1, 2, 5}, {1, 3}, Device::CUDA);
  int thrown_at = -1;
  std::string what;
  for (int i = 0; i < 1000 && thrown_at < 0; ++i) {
    what = error_of([&] { G().encoder_forward(out, i == 3 ? bad : good, wte, wpe); });
    if (!what.empty()) thrown_at = i;
  }
  EXPECT_GT(thrown_at, 3) << "a launch waited for its own check";
  EXPECT_LT(thrown_at, 1000) << "the slots never ran out";
  EXPECT_HAS(what, "token id 5 at position 2 is outside the vocabulary [0, 5)");
  EXPECT_HAS(what, "reported at encoder_forward");
  EXPECT_NO_THROW(G().synchronize());
  for (int i = 0; i < 200; ++i) G().encoder_forward(out, good, wte, wpe);
  EXPECT_NO_THROW(G().synchronize()) << "good ids, however many checks";
}

// An allocation the device cannot hold throws an error that says how much was asked for
// and how much is free; the failure must not linger as the runtime's last error, where
// the next launch check would blame an innocent kernel for it.
TEST(CudaOps, FailedAllocationIsReportedAndNotBlamedOnTheNextKernel) {
  REQUIRE_GPU();
  try {
    Tensor huge = empty({int64_t(1) << 50}, DType::F32, Device::CUDA);  // 4 PiB
    ADD_FAILURE() << "a 4 PiB allocation succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of memory"), std::string::npos) << what;
    EXPECT_NE(what.find("MiB free of"), std::string::npos) << what;
  }
  Tensor x = zeros({16}, DType::F32, Device::CUDA);
  EXPECT_NO_THROW(G().scale(x, 2.f));
  EXPECT_NO_THROW(G().synchronize());
}

TEST(CudaOps, LayernormForwardBackward) {
  REQUIRE_GPU();
  struct Case { int N, C; };
  for (Case k : {Case{5, 7}, Case{64, 768}, Case{33, 1000}, Case{200, 64}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + " " + dtype_name(dt));
      Vec x = as_stored(randn(size_t(k.N * k.C), 10, 2.f), dt);
      for (size_t i = 0; i < x.size(); ++i) x[i] += 0.5f;  // a non-zero mean to remove
      Vec w = randn(size_t(k.C), 11), b = randn(size_t(k.C), 12);  // f32 params
      Tensor out = gpu_poison({k.N, k.C}, dt), mean = gpu_poison({k.N}, DType::F32), rstd = gpu_poison({k.N}, DType::F32);
      Tensor out_r = empty({k.N, k.C}), mean_r = empty({k.N}), rstd_r = empty({k.N});
      Tensor gx = gpu_tensor(x, {k.N, k.C}, dt), gw = gpu_tensor(w, {k.C}, DType::F32);
      Tensor cx = cpu_tensor(x, {k.N, k.C}), cw = cpu_tensor(w, {k.C});
      G().layernorm_forward(out, mean, rstd, gx, gw, gpu_tensor(b, {k.C}, DType::F32));
      H().layernorm_forward(out_r, mean_r, rstd_r, cx, cw, cpu_tensor(b, {k.C}));
      EXPECT_CLOSE(out, out_r, dt);
      EXPECT_CLOSE(mean, mean_r, DType::F32);
      EXPECT_CLOSE(rstd, rstd_r, DType::F32);

      Vec dout = as_stored(randn(size_t(k.N * k.C), 13), dt);
      Vec dx0 = as_stored(randn(size_t(k.N * k.C), 14), dt);
      Vec dw0 = randn(size_t(k.C), 15), db0 = randn(size_t(k.C), 16);
      Tensor dx = gpu_tensor(dx0, {k.N, k.C}, dt), dw = gpu_tensor(dw0, {k.C}, DType::F32), db = gpu_tensor(db0, {k.C}, DType::F32);
      Tensor dx_r = cpu_tensor(dx0, {k.N, k.C}), dw_r = cpu_tensor(dw0, {k.C}), db_r = cpu_tensor(db0, {k.C});
      // Both sides use the CPU statistics so the test isolates the backward.
      Tensor gmean = to_device(mean_r, Device::CUDA), grstd = to_device(rstd_r, Device::CUDA);
      G().layernorm_backward(dx, dw, db, gpu_tensor(dout, {k.N, k.C}, dt), gx, gw, gmean, grstd);
      H().layernorm_backward(dx_r, dw_r, db_r, cpu_tensor(dout, {k.N, k.C}), cx, cw, mean_r, rstd_r);
      EXPECT_CLOSE(dx, dx_r, dt);
      EXPECT_CLOSE(dw, dw_r, dt);
      EXPECT_CLOSE(db, db_r, dt);
    }
  }
}

// The fused residual add + LayerNorm against the CPU op, and against the GPU's own add
// then layernorm_forward bit for bit (selective recomputation relies on that). Rows of
// C = 2000 in f32 and 3200 in both dtypes overflow the shared-memory row cache: they
// take the path that re-reads the row from global memory.
TEST(CudaOps, ResidualLayernormForward) {
  REQUIRE_GPU();
  struct Case { int N, C; };
  for (Case k : {Case{5, 7}, Case{64, 768}, Case{33, 1000}, Case{9, 2000}, Case{17, 3200}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + " " + dtype_name(dt));
      Vec x = randn(size_t(k.N * k.C), 17, 2.f);
      for (float& v : x) v += 0.5f;  // a non-zero mean to remove
      x = as_stored(x, dt);
      Vec y = as_stored(randn(size_t(k.N * k.C), 18), dt);
      Vec w = randn(size_t(k.C), 19), b = randn(size_t(k.C), 20);  // f32 params
      Tensor gx = gpu_tensor(x, {k.N, k.C}, dt), gy = gpu_tensor(y, {k.N, k.C}, dt);
      Tensor gw = gpu_tensor(w, {k.C}, DType::F32), gb = gpu_tensor(b, {k.C}, DType::F32);
      Tensor sum = gpu_poison({k.N, k.C}, dt), out = gpu_poison({k.N, k.C}, dt);
      Tensor mean = gpu_poison({k.N}, DType::F32), rstd = gpu_poison({k.N}, DType::F32);
      G().residual_layernorm_forward(sum, out, mean, rstd, gx, gy, gw, gb);
      // The CPU op on tensors of the same dtype, so it rounds sum before the statistics
      // exactly as the GPU does.
      auto stored = [&](const Vec& v) {
        Tensor t = empty({k.N, k.C}, dt);
        from_host_f32(t, v.data());
        return t;
      };
      Tensor sum_r = empty({k.N, k.C}, dt), out_r = empty({k.N, k.C}, dt);
      Tensor mean_r = empty({k.N}), rstd_r = empty({k.N});
      H().residual_layernorm_forward(sum_r, out_r, mean_r, rstd_r, stored(x), stored(y),
                                     cpu_tensor(w, {k.C}), cpu_tensor(b, {k.C}));
      EXPECT_CLOSE(sum, sum_r, dt);
      EXPECT_CLOSE(out, out_r, dt);
      EXPECT_CLOSE(mean, mean_r, DType::F32);
      EXPECT_CLOSE(rstd, rstd_r, DType::F32);

      Tensor sum2 = gpu_poison({k.N, k.C}, dt), out2 = gpu_poison({k.N, k.C}, dt);
      Tensor mean2 = gpu_poison({k.N}, DType::F32), rstd2 = gpu_poison({k.N}, DType::F32);
      G().add(sum2, gx, gy);
      G().layernorm_forward(out2, mean2, rstd2, sum2, gw, gb);
      EXPECT_TRUE(bit_identical(sum, sum2)) << "sum vs add";
      EXPECT_TRUE(bit_identical(out, out2)) << "out vs add + layernorm_forward";
      EXPECT_TRUE(bit_identical(mean, mean2)) << "mean";
      EXPECT_TRUE(bit_identical(rstd, rstd2)) << "rstd";

      // In place, as the block calls it: the sum overwrites a.
      Tensor out3 = gpu_poison({k.N, k.C}, dt);
      G().residual_layernorm_forward(gx, out3, mean, rstd, gx, gy, gw, gb);
      EXPECT_TRUE(bit_identical(gx, sum2)) << "in-place sum";
      EXPECT_TRUE(bit_identical(out3, out2)) << "in-place out";
    }
  }
}

TEST(CudaOps, MatmulForwardBackward) {
  REQUIRE_GPU();
  struct Case { int N, C, OC; bool bias; };
  for (Case k : {Case{7, 5, 3, true}, Case{64, 96, 288, true}, Case{33, 65, 97, false},
                 Case{130, 768, 1001, true}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + "->" + std::to_string(k.OC) +
                   " " + dtype_name(dt));
      Vec x = as_stored(randn(size_t(k.N * k.C), 20), dt);
      Vec w = as_stored(randn(size_t(k.OC * k.C), 21, 0.05f), dt);
      Vec b = as_stored(randn(size_t(k.OC), 22), dt);
      Tensor gx = gpu_tensor(x, {k.N, k.C}, dt), gw = gpu_tensor(w, {k.OC, k.C}, dt), gb = gpu_tensor(b, {k.OC}, dt);
      Tensor cx = cpu_tensor(x, {k.N, k.C}), cw = cpu_tensor(w, {k.OC, k.C}), cb = cpu_tensor(b, {k.OC});
      Tensor out = gpu_poison({k.N, k.OC}, dt), out_r = empty({k.N, k.OC});
      G().matmul_forward(out, gx, gw, k.bias ? &gb : nullptr);
      H().matmul_forward(out_r, cx, cw, k.bias ? &cb : nullptr);
      EXPECT_CLOSE(out, out_r, dt);

      // dinp (overwritten) in the activation dtype; dweight, dbias (accumulated onto a
      // random base) fp32: mixed-precision gradients.
      Vec dout = as_stored(randn(size_t(k.N * k.OC), 23), dt);
      Vec dw0 = randn(size_t(k.OC * k.C), 25), db0 = randn(size_t(k.OC), 26);
      Tensor dx = gpu_poison({k.N, k.C}, dt), dw = gpu_tensor(dw0, {k.OC, k.C}, DType::F32), db = gpu_tensor(db0, {k.OC}, DType::F32);
      Tensor dx_r = empty({k.N, k.C}), dw_r = cpu_tensor(dw0, {k.OC, k.C}), db_r = cpu_tensor(db0, {k.OC});
      G().matmul_backward(&dx, dw, k.bias ? &db : nullptr, gpu_tensor(dout, {k.N, k.OC}, dt), gx, gw);
      H().matmul_backward(&dx_r, dw_r, k.bias ? &db_r : nullptr, cpu_tensor(dout, {k.N, k.OC}), cx, cw);
      EXPECT_CLOSE(dx, dx_r, dt);
      EXPECT_CLOSE(dw, dw_r, dt);
      EXPECT_CLOSE(db, db_r, dt);
      // No input gradient requested: only dweight changes.
      G().matmul_backward(nullptr, dw, nullptr, gpu_tensor(dout, {k.N, k.OC}, dt), gx, gw);
      H().matmul_backward(nullptr, dw_r, nullptr, cpu_tensor(dout, {k.N, k.OC}), cx, cw);
      EXPECT_CLOSE(dw, dw_r, dt);
    }
  }
}

// The MLP's fused backward (cuBLASLt's DGELU epilogue in bf16) against the CPU op, with
// the epilogue on and off: shapes where it applies (C a multiple of 8), where it cannot
// (C = 65: the separate kernel), and GPT-2 124M's MLP projection rows.
TEST(CudaOps, MatmulGeluBackward) {
  REQUIRE_GPU();
  struct Case { int N, C, OC; };
  for (bool epilogue : {true, false}) {
    const bool previous = cuda::set_gelu_epilogue_for_tests(epilogue);
    for (Case k : {Case{7, 8, 3}, Case{33, 65, 97}, Case{130, 3072, 768}}) {
      for (DType dt : kFloatTypes) {
        SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + "->" +
                     std::to_string(k.OC) + " " + dtype_name(dt) +
                     (epilogue ? " epilogue" : " separate"));
        const Shape in_shape{k.N, k.C}, w_shape{k.OC, k.C}, out_shape{k.N, k.OC};
        Vec pre = as_stored(randn(size_t(k.N * k.C), 100, 2.f), dt);
        Tensor cpre = cpu_tensor(pre, in_shape), cx = empty(in_shape);
        H().gelu_forward(cx, cpre);
        Vec x = as_stored(to_host_f32(cx), dt);
        cx = cpu_tensor(x, in_shape);
        Vec w = as_stored(randn(size_t(k.OC * k.C), 101, 0.05f), dt);
        Vec dout = as_stored(randn(size_t(k.N * k.OC), 102), dt);
        Vec dw0 = randn(size_t(k.OC * k.C), 103), db0 = randn(size_t(k.OC), 104);
        Tensor dpre = gpu_poison(in_shape, dt), dw = gpu_tensor(dw0, w_shape, DType::F32);
        Tensor db = gpu_tensor(db0, {k.OC}, DType::F32);
        Tensor dpre_r = empty(in_shape), dw_r = cpu_tensor(dw0, w_shape), db_r = cpu_tensor(db0, {k.OC});
        const int64_t fused_before = cuda::fused_gelu_gemms_for_tests();
        G().matmul_gelu_backward(dpre, dw, &db, gpu_tensor(dout, out_shape, dt),
                                 gpu_tensor(x, in_shape, dt), gpu_tensor(w, w_shape, dt),
                                 gpu_tensor(pre, in_shape, dt));
        // GPT-2's shape in bf16 must really take the epilogue (the benchmark's A/B
        // would otherwise time the fallback twice); C = 65 never can.
        const bool fused = cuda::fused_gelu_gemms_for_tests() > fused_before;
        if (epilogue && dt == DType::BF16 && k.C == 3072) EXPECT_TRUE(fused) << "DGELU epilogue not taken";
        if (!epilogue || dt == DType::F32 || k.C % 8 != 0) EXPECT_FALSE(fused);
        H().matmul_gelu_backward(dpre_r, dw_r, &db_r, cpu_tensor(dout, out_shape), cx,
                                 cpu_tensor(w, w_shape), cpre);
        EXPECT_CLOSE(dpre, dpre_r, dt);
        EXPECT_CLOSE(dw, dw_r, dt);
        EXPECT_CLOSE(db, db_r, dt);
      }
    }
    cuda::set_gelu_epilogue_for_tests(previous);
  }
}

// cuBLASLt plans are cached per GEMM signature; pointers, the bias pointer above all
// (a descriptor attribute), must still be this call's. Same shapes, different tensors,
// and a view at an odd offset (another alignment class, so another plan).
TEST(CudaOps, MatmulPlanCacheKeepsEachCallsPointers) {
  REQUIRE_GPU();
  const int N = 64, C = 96, OC = 288;
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    for (int round = 0; round < 2; ++round) {
      for (uint32_t seed : {80u, 90u}) {
        for (int64_t offset : {int64_t(0), int64_t(1)}) {
          SCOPED_TRACE("seed " + std::to_string(seed) + " offset " + std::to_string(offset));
          Vec x = as_stored(randn(size_t(N * C), seed), dt);
          Vec w = as_stored(randn(size_t(OC * C), seed + 1, 0.05f), dt);
          Vec b = as_stored(randn(size_t(OC + offset), seed + 2), dt);
          Tensor gb_buf = gpu_tensor(b, {OC + offset}, dt), cb_buf = cpu_tensor(b, {OC + offset});
          Tensor gb = gb_buf.slice(offset, {OC}), cb = cb_buf.slice(offset, {OC});
          Tensor gx = gpu_tensor(x, {N, C}, dt), gw = gpu_tensor(w, {OC, C}, dt);
          Tensor out = gpu_poison({N, OC}, dt), out_r = empty({N, OC});
          G().matmul_forward(out, gx, gw, &gb);
          H().matmul_forward(out_r, cpu_tensor(x, {N, C}), cpu_tensor(w, {OC, C}), &cb);
          EXPECT_CLOSE(out, out_r, dt);
        }
      }
    }
  }
}

TEST(CudaOps, GeluAddAccumulateScale) {
  REQUIRE_GPU();
  for (int n : {1, 37, 4096 + 3}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(n) + " " + dtype_name(dt));
      Vec x = as_stored(randn(size_t(n), 30, 2.f), dt), y = as_stored(randn(size_t(n), 31), dt);
      Vec base = as_stored(randn(size_t(n), 32), dt);
      Tensor gx = gpu_tensor(x, {n}, dt), gy = gpu_tensor(y, {n}, dt), cx = cpu_tensor(x, {n}), cy = cpu_tensor(y, {n});
      Tensor out = gpu_poison({n}, dt), out_r = empty({n});
      G().gelu_forward(out, gx);
      H().gelu_forward(out_r, cx);
      EXPECT_CLOSE(out, out_r, dt);
      Tensor dx = gpu_poison({n}, dt), dx_r = empty({n});
      G().gelu_backward(dx, gx, gy);
      H().gelu_backward(dx_r, cx, cy);
      EXPECT_CLOSE(dx, dx_r, dt);
      Tensor sum = gpu_poison({n}, dt), sum_r = empty({n});
      G().add(sum, gx, gy);
      H().add(sum_r, cx, cy);
      EXPECT_CLOSE(sum, sum_r, dt);
      Tensor acc = gpu_tensor(base, {n}, dt), acc_r = cpu_tensor(base, {n});
      G().accumulate(acc, gx);
      H().accumulate(acc_r, cx);
      EXPECT_CLOSE(acc, acc_r, dt);
      G().scale(acc, 0.37f);
      H().scale(acc_r, 0.37f);
      EXPECT_CLOSE(acc, acc_r, dt);
    }
  }
  // bf16 into an fp32 buffer (activation gradients into fp32 accumulators).
  Vec s = as_stored(randn(100, 33), DType::BF16), base = randn(100, 34);
  Tensor acc = gpu_tensor(base, {100}, DType::F32), acc_r = cpu_tensor(base, {100});
  G().accumulate(acc, gpu_tensor(s, {100}, DType::BF16));
  H().accumulate(acc_r, cpu_tensor(s, {100}));
  EXPECT_CLOSE(acc, acc_r, DType::F32);
}

// Conversion is exact arithmetic on bits: the GPU must give the CPU op's bits, NaNs,
// ties, denormals and infinities included, on the vector path, its tail, and the
// scalar path of a misaligned view.
TEST(CudaOps, ConvertMatchesCpuBitExactly) {
  REQUIRE_GPU();
  const int64_t n = 100003;  // not a multiple of the 8-element vector: exercises the tail
  std::vector<uint32_t> bits(static_cast<size_t>(n));
  uint32_t x = 777;
  for (auto& b : bits) b = x = x * 1664525u + 1013904223u;  // every exponent and sign
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0xbf818000u, 0x7f7fffffu, 0x7f800000u,
                              0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffa12345u, 0x00018000u,
                              0x80008000u, 0x007fffffu, 0x00000000u, 0x80000000u};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; ++i) bits[i] = special[i];
  Tensor f_cpu = empty({n});
  std::memcpy(f_cpu.raw(), bits.data(), size_t(n) * 4);
  Tensor f_gpu = to_device(f_cpu, Device::CUDA);
  for (int64_t off : {int64_t(0), int64_t(1)}) {  // 1: misaligned views, scalar kernel
    for (int64_t len : {n - off, int64_t(5), int64_t(8), int64_t(4096 + 3)}) {
      SCOPED_TRACE("offset " + std::to_string(off) + " numel " + std::to_string(len));
      Tensor src_c = f_cpu.slice(off, {len}), src_g = f_gpu.slice(off, {len});
      Tensor h_c = empty({len}, DType::BF16), h_g_buf = empty({len + 1}, DType::BF16, Device::CUDA);
      Tensor h_g = h_g_buf.slice(off, {len});
      H().convert(h_c, src_c);
      G().convert(h_g, src_g);
      EXPECT_TRUE(bit_identical(h_g, h_c)) << "f32 -> bf16";
      Tensor w_c = empty({len}), w_g_buf = empty({len + 1}, DType::F32, Device::CUDA);
      Tensor w_g = w_g_buf.slice(off, {len});
      H().convert(w_c, h_c);
      G().convert(w_g, h_g);
      EXPECT_TRUE(bit_identical(w_g, w_c)) << "bf16 -> f32";
      Tensor same = empty({len}, DType::F32, Device::CUDA);
      G().convert(same, src_g);
      EXPECT_TRUE(bit_identical(same, src_c)) << "f32 -> f32";
    }
  }
  Tensor wrong = empty({n + 1}, DType::BF16, Device::CUDA);
  EXPECT_THROW(G().convert(wrong, f_gpu), Error);
}

struct AttnCase { int B, T, NH, HS; };
const AttnCase kAttnCases[] = {{1, 1, 1, 4},  {2, 17, 3, 7},  {1, 70, 2, 64},
                               {2, 33, 1, 128}, {1, 130, 4, 48}, {2, 64, 12, 64}};

TEST(CudaOps, AttentionForwardBackward) {
  REQUIRE_GPU();
  for (AttnCase k : kAttnCases) {
    for (DType dt : kFloatTypes) {
      const int C = k.NH * k.HS;
      SCOPED_TRACE("B" + std::to_string(k.B) + " T" + std::to_string(k.T) + " NH" +
                   std::to_string(k.NH) + " HS" + std::to_string(k.HS) + " " + dtype_name(dt));
      Vec qkv = as_stored(randn(size_t(k.B * k.T * 3 * C), 40), dt);
      Tensor gq = gpu_tensor(qkv, {k.B, k.T, 3 * C}, dt), cq = cpu_tensor(qkv, {k.B, k.T, 3 * C});
      Tensor out = gpu_poison({k.B, k.T, C}, dt), lse = gpu_poison({k.B, k.NH, k.T}, DType::F32);
      Tensor out_r = empty({k.B, k.T, C}), lse_r = empty({k.B, k.NH, k.T});
      G().attention_forward(out, lse, gq, k.NH);
      H().attention_forward(out_r, lse_r, cq, k.NH);
      EXPECT_CLOSE(out, out_r, dt);
      EXPECT_CLOSE(lse, lse_r, dt);

      // Backward from the CPU's forward results, so it is tested on its own.
      Vec dout = as_stored(randn(size_t(k.B * k.T * C), 41), dt);
      Vec o = as_stored(to_host_f32(out_r), dt);
      Tensor dq = gpu_poison({k.B, k.T, 3 * C}, dt), dq_r = empty({k.B, k.T, 3 * C});
      G().attention_backward(dq, gpu_tensor(dout, {k.B, k.T, C}, dt), gpu_tensor(o, {k.B, k.T, C}, dt),
                             to_device(lse_r, Device::CUDA), gq, k.NH);
      H().attention_backward(dq_r, cpu_tensor(dout, {k.B, k.T, C}), cpu_tensor(o, {k.B, k.T, C}), lse_r,
                             cq, k.NH);
      EXPECT_CLOSE(dq, dq_r, dt);
    }
  }
}

// ---- bf16 attention on tensor cores (core/cuda/attention_tc.cu) ----
//
// bf16 activations with HS % 16 == 0 take the wmma kernels, which round P and dS to bf16
// before their matmuls; bounds, relative to the reference's max |x|: out, dQ, dK, dV
// 1e-2; lse 1e-3 (computed in fp32 from exact bf16 products).

// The fp32 CUDA-core kernels for bf16 too while alive, as GPT_ATTENTION=simple.
struct SimpleAttentionKernels {
  bool previous = cuda::set_attention_kernel_for_tests(true);
  ~SimpleAttentionKernels() { cuda::set_attention_kernel_for_tests(previous); }
};

struct TcCase {
  int B, T, NH, HS;
  float input_scale;  // > 1 sharpens the softmax: the running max moves more
};
std::string tc_name(const TcCase& k) {
  return "B" + std::to_string(k.B) + " T" + std::to_string(k.T) + " NH" + std::to_string(k.NH) +
         " HS" + std::to_string(k.HS) + " x" + std::to_string(k.input_scale);
}

// Part `part` (0: q, 1: k, 2: v) of each row of a [rows, 3C] tensor.
Vec qkv_part(const Vec& x, size_t rows, int C, int part) {
  Vec y;
  y.reserve(rows * size_t(C));
  for (size_t r = 0; r < rows; ++r)
    y.insert(y.end(), x.begin() + long(r * 3 * C + size_t(part) * C),
             x.begin() + long(r * 3 * C + size_t(part + 1) * C));
  return y;
}

// Forward (out, lse into NaN-poisoned buffers) and backward against the CPU op, in bf16.
// The backward runs from the CPU's forward results into a poisoned dqkv (it overwrites
// every element); dQ, dK and dV are each compared against their own scale, except for
// T = 1, where dQ = dK = 0 up to rounding and dqkv is compared as a whole.
void check_attention_bf16(const TcCase& k) {
  SCOPED_TRACE(tc_name(k));
  const DType dt = DType::BF16;
  const int C = k.NH * k.HS;
  const size_t rows = size_t(k.B) * k.T;
  const Shape qkv_shape{k.B, k.T, 3 * C}, out_shape{k.B, k.T, C}, lse_shape{k.B, k.NH, k.T};
  Vec qkv = as_stored(randn(rows * 3 * C, 80, k.input_scale), dt);
  Tensor gq = gpu_tensor(qkv, qkv_shape, dt), cq = cpu_tensor(qkv, qkv_shape);
  Tensor out = gpu_poison(out_shape, dt), lse = gpu_poison(lse_shape, DType::F32);
  Tensor out_r = empty(out_shape), lse_r = empty(lse_shape);
  G().attention_forward(out, lse, gq, k.NH);
  H().attention_forward(out_r, lse_r, cq, k.NH);
  EXPECT_LE(rel_err(out, out_r), 1e-2) << "out";
  EXPECT_LE(rel_err(lse, lse_r), 1e-3) << "lse";

  Vec dout = as_stored(randn(rows * C, 81), dt);
  Vec o = as_stored(to_host_f32(out_r), dt);
  Tensor g_dout = gpu_tensor(dout, out_shape, dt), c_dout = cpu_tensor(dout, out_shape);
  Tensor g_o = gpu_tensor(o, out_shape, dt), c_o = cpu_tensor(o, out_shape);
  Tensor g_lse = to_device(lse_r, Device::CUDA);
  Tensor d = gpu_poison(qkv_shape, dt), d_r = empty(qkv_shape);
  G().attention_backward(d, g_dout, g_o, g_lse, gq, k.NH);
  H().attention_backward(d_r, c_dout, c_o, lse_r, cq, k.NH);
  const Vec g = to_host_f32(d), c = to_host_f32(d_r);
  if (k.T == 1) {
    EXPECT_LE(rel_err(g, c), 1e-2) << "dqkv";
    return;
  }
  const char* names[] = {"dq", "dk", "dv"};
  for (int part = 0; part < 3; ++part)
    EXPECT_LE(rel_err(qkv_part(g, rows, C, part), qkv_part(c, rows, C, part)), 1e-2)
        << names[part];
}

TEST(CudaOps, AttentionTensorCoresBf16) {
  REQUIRE_GPU();
  const TcCase cases[] = {
      {1, 1024, 2, 64, 1.f},  // GPT-2's head size and block size
      {2, 77, 3, 64, 1.f},    // T not a multiple of the 64-row tile
      {1, 129, 2, 64, 2.f},   // one row into a third tile; a sharp softmax
      {2, 50, 2, 16, 1.f},    // the smallest head, a single partial tile
      {1, 200, 2, 128, 1.f},  // the largest head
      {2, 100, 2, 32, 1.f},
      {1, 90, 2, 80, 1.f},    // 5 of the 8 register tiles in use
      {1, 2048, 1, 64, 1.5f},
      {3, 1, 2, 64, 1.f},     // one token: a single visible key
  };
  for (const TcCase& k : cases) check_attention_bf16(k);
}

// Same inputs, same bits: bf16 forward and backward with the kernels selected now, for
// HS 64 and 128 (no atomics, fixed summation order).
void check_attention_bf16_deterministic() {
  for (int HS : {64, 128}) {
    SCOPED_TRACE("HS" + std::to_string(HS));
    const DType dt = DType::BF16;
    const int B = 2, T = 300, NH = 4, C = NH * HS;
    Tensor qkv = gpu_tensor(randn(size_t(B * T * 3 * C), 90), {B, T, 3 * C}, dt);
    Tensor dout = gpu_tensor(randn(size_t(B * T * C), 91), {B, T, C}, dt);
    Tensor out[2], lse[2], dqkv[2];
    for (int run = 0; run < 2; ++run) {
      out[run] = gpu_poison({B, T, C}, dt);
      lse[run] = gpu_poison({B, NH, T}, DType::F32);
      G().attention_forward(out[run], lse[run], qkv, NH);
      dqkv[run] = gpu_poison({B, T, 3 * C}, dt);
      G().attention_backward(dqkv[run], dout, out[run], lse[run], qkv, NH);
    }
    EXPECT_TRUE(bit_identical(out[0], out[1])) << "out";
    EXPECT_TRUE(bit_identical(lse[0], lse[1])) << "lse";
    EXPECT_TRUE(bit_identical(dqkv[0], dqkv[1])) << "dqkv";
  }
}

TEST(CudaOps, AttentionTensorCoresDeterministic) {
  REQUIRE_GPU();
  check_attention_bf16_deterministic();
}

// ---- bf16 attention on inline-PTX mma.sync (core/cuda/attention_mma.cu) ----
//
// The same checks with GPT_ATTENTION=mma's kernels (HS 64 and 128; other head sizes
// keep the wmma ones, so the cases stay on the supported sizes).

// The mma kernels for bf16 while alive, as GPT_ATTENTION=mma.
struct MmaAttentionKernels {
  bool previous = cuda::set_attention_mma_for_tests(true);
  ~MmaAttentionKernels() { cuda::set_attention_mma_for_tests(previous); }
};

TEST(CudaOps, AttentionMmaBf16) {
  REQUIRE_GPU();
  MmaAttentionKernels mma;
  const TcCase cases[] = {
      {1, 1024, 2, 64, 1.f},  // GPT-2's head size and block size
      {2, 77, 3, 64, 1.f},    // T not a multiple of the 64-key step
      {1, 129, 2, 64, 2.f},   // one row into a second 128-query tile; a sharp softmax
      {1, 63, 2, 128, 1.f},   // a single partial tile
      {1, 200, 2, 128, 1.f},  // the largest head
      {1, 2048, 1, 64, 1.5f},
      {2, 300, 2, 128, 1.5f},
      {3, 1, 2, 64, 1.f},  // one token: a single visible key
      {2, 1, 2, 128, 1.f},
  };
  for (const TcCase& k : cases) check_attention_bf16(k);
}

// Same inputs, same bits, on the mma kernels.
TEST(CudaOps, AttentionMmaDeterministic) {
  REQUIRE_GPU();
  MmaAttentionKernels mma;
  check_attention_bf16_deterministic();
}

// The mma forward agrees with the wmma one (both round P to bf16 before P V; they differ
// in summation order only).
TEST(CudaOps, AttentionMmaMatchesWmma) {
  REQUIRE_GPU();
  for (int HS : {64, 128}) {
    SCOPED_TRACE("HS" + std::to_string(HS));
    const DType dt = DType::BF16;
    const int B = 2, T = 333, NH = 3, C = NH * HS;
    Tensor qkv = gpu_tensor(randn(size_t(B * T * 3 * C), 93), {B, T, 3 * C}, dt);
    Tensor out_w = gpu_poison({B, T, C}, dt), lse_w = gpu_poison({B, NH, T}, DType::F32);
    G().attention_forward(out_w, lse_w, qkv, NH);
    Tensor out_m = gpu_poison({B, T, C}, dt), lse_m = gpu_poison({B, NH, T}, DType::F32);
    {
      MmaAttentionKernels mma;
      G().attention_forward(out_m, lse_m, qkv, NH);
    }
    EXPECT_LE(rel_err(out_m, out_w), 1e-2) << "out";
    EXPECT_LE(rel_err(lse_m, lse_w), 1e-4) << "lse";
  }
}

// GPT_ATTENTION=simple: bf16 on the fp32 CUDA-core kernels still matches the CPU, and
// differs in its bits from the tensor-core result (so the switch really switches).
TEST(CudaOps, AttentionSimpleKernelsForBf16) {
  REQUIRE_GPU();
  {
    SimpleAttentionKernels simple;
    for (const TcCase& k : {TcCase{2, 77, 3, 64, 1.f}, TcCase{1, 129, 2, 128, 1.f}})
      check_attention_bf16(k);
  }
  const DType dt = DType::BF16;
  const int B = 1, T = 129, NH = 2, HS = 64, C = NH * HS;
  Tensor qkv = gpu_tensor(randn(size_t(B * T * 3 * C), 93), {B, T, 3 * C}, dt);
  Tensor out_tc = empty({B, T, C}, dt, Device::CUDA), lse_tc = empty({B, NH, T}, DType::F32, Device::CUDA);
  G().attention_forward(out_tc, lse_tc, qkv, NH);
  Tensor out_simple = empty({B, T, C}, dt, Device::CUDA), lse_simple = empty({B, NH, T}, DType::F32, Device::CUDA);
  {
    SimpleAttentionKernels simple;
    G().attention_forward(out_simple, lse_simple, qkv, NH);
  }
  EXPECT_LE(rel_err(out_tc, out_simple), 1e-2);
  EXPECT_FALSE(bit_identical(out_tc, out_simple)) << "bf16 HS 64 should take the tensor cores";
}

TEST(CudaOps, CrossEntropyForwardBackward) {
  REQUIRE_GPU();
  struct Case { int N, V; };
  for (Case k : {Case{1, 3}, Case{9, 1001}, Case{64, 50257}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.V) + " " + dtype_name(dt));
      Vec z = as_stored(randn(size_t(k.N) * k.V, 50, 3.f), dt);
      auto t = random_ids(size_t(k.N), k.V, 51);
      if (k.N > 2) t[1] = -1;  // ignored position
      Tensor gz = gpu_tensor(z, {k.N, k.V}, dt), cz = cpu_tensor(z, {k.N, k.V});
      Tensor gt = ints(t, {k.N}, Device::CUDA), ct = ints(t, {k.N}, Device::CPU);
      Tensor loss = gpu_poison({k.N}, DType::F32), loss_r = empty({k.N});
      G().cross_entropy_forward(loss, gz, gt);
      H().cross_entropy_forward(loss_r, cz, ct);
      EXPECT_CLOSE(loss, loss_r, dt);
      // The fused classifier: losses again, and the logits overwritten by their gradient.
      Tensor fused = gpu_poison({k.N}, DType::F32), fused_r = empty({k.N});
      G().cross_entropy_forward_backward(fused, gz, gt, 0.25f);
      H().cross_entropy_forward_backward(fused_r, cz, ct, 0.25f);
      EXPECT_CLOSE(fused, loss_r, dt);
      EXPECT_CLOSE(fused_r, loss_r, DType::F32);
      EXPECT_CLOSE(gz, cz, dt);
    }
  }
}

// As for the encoder: queued, reported by the next call that waits, and meanwhile the
// bad row is an ignored one (loss 0, zero gradient), read nowhere outside the logits.
TEST(CudaOps, CrossEntropyRejectsTargetOutsideVocabulary) {
  REQUIRE_GPU();
  Tensor loss = gpu_poison({2}, DType::F32);
  Tensor logits = gpu_tensor(randn(10, 7), {2, 5}, DType::F32);
  EXPECT_NO_THROW(G().cross_entropy_forward(loss, logits, ints({1, 5}, {2}, Device::CUDA)));
  std::string what = error_of([&] { (void)to_host_f32(loss); });
  EXPECT_HAS(what, "cross_entropy_forward");
  EXPECT_HAS(what, "target token id 5 at position 1 is outside the vocabulary [0, 5)");
  EXPECT_HAS(what, "copy_to_host");
  EXPECT_EQ(to_host_f32(loss)[1], 0.f);

  EXPECT_NO_THROW(G().cross_entropy_forward_backward(loss, logits,
                                                     ints({-1, 99999}, {2}, Device::CUDA), 1.f));
  Tensor x = zeros({3}, DType::F32, Device::CUDA);
  what = error_of([&] { (void)G().sum_squares(x); });
  EXPECT_HAS(what, "cross_entropy_forward_backward");
  EXPECT_HAS(what, "target token id 99999 at position 1 is outside the vocabulary [0, 5)");
  EXPECT_HAS(what, "sum_squares");
  EXPECT_EQ(to_host_f32(loss), Vec({0.f, 0.f}));
  EXPECT_EQ(to_host_f32(logits), Vec(10, 0.f)) << "both rows ignored: zero gradient";

  // copy_from_host reports too (here while uploading the next targets).
  G().cross_entropy_forward(loss, logits, ints({-7, 2}, {2}, Device::CUDA));  // -7: ignored
  G().cross_entropy_forward(loss, logits, ints({6, 2}, {2}, Device::CUDA));
  what = error_of([&] { (void)ints({0, 0}, {2}, Device::CUDA); });
  EXPECT_HAS(what, "target token id 6 at position 0");
  EXPECT_HAS(what, "copy_from_host");
}

// The vocabulary-slice ops against the CPU's, slice by slice: V = 1001 in 4 slices of
// 256 ids (the last with 233 real ids and 23 padding) and V = 50 in 4 slices of 64 (slice
// 0 real up to id 49, slices 1-3 padding only).
TEST(CudaOps, VocabularySliceOps) {
  REQUIRE_GPU();
  struct Case { int N, V, Vs; };
  for (Case k : {Case{9, 1001, 256}, Case{5, 50, 64}}) {
    for (DType dt : kFloatTypes) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.V) + " " + dtype_name(dt));
      const int S = 4, C = 12, T = k.N;
      auto t = random_ids(size_t(k.N), k.V, 61);
      t[1] = -1;  // ignored position
      Tensor gt = ints(t, {k.N}, Device::CUDA), ct = ints(t, {k.N}, Device::CPU);
      Tensor stats = gpu_poison({S, 3, k.N}, DType::F32), stats_r = empty({S, 3, k.N});
      std::vector<Vec> z;
      for (int s = 0; s < S; ++s) {
        z.push_back(as_stored(randn(size_t(k.N) * k.Vs, 62 + s, 3.f), dt));
        Tensor gz = gpu_tensor(z.back(), {k.N, k.Vs}, dt), cz = cpu_tensor(z.back(), {k.N, k.Vs});
        Tensor gs = stats.slice(int64_t(s) * 3 * k.N, {3, k.N}), cs = stats_r.slice(int64_t(s) * 3 * k.N, {3, k.N});
        G().cross_entropy_slice_stats(gs, gz, gt, int64_t(s) * k.Vs, k.V);
        H().cross_entropy_slice_stats(cs, cz, ct, int64_t(s) * k.Vs, k.V);
      }
      // Rows of padding-only slices hold -inf maxima: compare the finite rows, and the sums.
      Vec g = to_host_f32(stats), c = to_host_f32(stats_r);
      for (size_t i = 0; i < c.size(); ++i)
        if (std::isinf(c[i])) {
          EXPECT_EQ(g[i], c[i]);
          g[i] = c[i] = 0.f;
        }
      EXPECT_LE(rel_err(g, c), tol(dt)) << "stats";
      for (int s = 0; s < S; ++s) {
        Tensor gz = gpu_tensor(z[size_t(s)], {k.N, k.Vs}, dt), cz = cpu_tensor(z[size_t(s)], {k.N, k.Vs});
        Tensor loss = gpu_poison({k.N}, DType::F32), loss_r = empty({k.N}), only = gpu_poison({k.N}, DType::F32);
        G().cross_entropy_slice_forward_backward(loss, &gz, gt, stats, int64_t(s) * k.Vs, k.V, 0.25f);
        H().cross_entropy_slice_forward_backward(loss_r, &cz, ct, stats_r, int64_t(s) * k.Vs, k.V, 0.25f);
        G().cross_entropy_slice_forward_backward(only, nullptr, gt, stats, int64_t(s) * k.Vs, k.V, 0.25f);
        EXPECT_CLOSE(loss, loss_r, dt);
        EXPECT_CLOSE(only, loss_r, dt);
        EXPECT_CLOSE(gz, cz, dt);
      }
      // The embedding: slice 1's rows, wpe added, then backward into fp32 gradients.
      auto ids = random_ids(size_t(2 * T), k.V, 70);
      Vec wte = as_stored(randn(size_t(k.Vs * C), 71), dt), wpe = as_stored(randn(size_t(T * C), 72), dt);
      Tensor wpe_g = gpu_tensor(wpe, {T, C}, dt), wpe_c = cpu_tensor(wpe, {T, C});
      Tensor out = gpu_poison({2, T, C}, dt), out_r = empty({2, T, C});
      G().encoder_slice_forward(out, ints(ids, {2, T}, Device::CUDA), gpu_tensor(wte, {k.Vs, C}, dt), &wpe_g, k.Vs, k.V);
      H().encoder_slice_forward(out_r, ints(ids, {2, T}, Device::CPU), cpu_tensor(wte, {k.Vs, C}), &wpe_c, k.Vs, k.V);
      EXPECT_CLOSE(out, out_r, dt);
      Vec dout = as_stored(randn(size_t(2 * T * C), 73), dt), base = randn(size_t(k.Vs * C), 74);
      Tensor dwte = gpu_tensor(base, {k.Vs, C}, DType::F32), dwte_r = cpu_tensor(base, {k.Vs, C});
      Tensor dwpe = zeros({T, C}, DType::F32, Device::CUDA), dwpe_r = zeros({T, C});
      G().encoder_slice_backward(dwte, dwpe, gpu_tensor(dout, {2, T, C}, dt), ints(ids, {2, T}, Device::CUDA), k.Vs);
      H().encoder_slice_backward(dwte_r, dwpe_r, cpu_tensor(dout, {2, T, C}), ints(ids, {2, T}, Device::CPU), k.Vs);
      EXPECT_CLOSE(dwte, dwte_r, DType::F32);
      EXPECT_CLOSE(dwpe, dwpe_r, DType::F32);
    }
  }
}

TEST(CudaOps, AdamwAndSumSquares) {
  REQUIRE_GPU();
  for (int n : {1, 7, 1024, 100003}) {
    SCOPED_TRACE(n);
    Vec p = randn(size_t(n), 60), g = randn(size_t(n), 61), m = randn(size_t(n), 62, 0.1f), v = randn(size_t(n), 63);
    for (float& x : v) x = x * x;
    Tensor gp = gpu_tensor(p, {n}, DType::F32), gm = gpu_tensor(m, {n}, DType::F32), gv = gpu_tensor(v, {n}, DType::F32);
    Tensor cp = cpu_tensor(p, {n}), cm = cpu_tensor(m, {n}), cv = cpu_tensor(v, {n});
    Tensor gg = gpu_tensor(g, {n}, DType::F32), cg = cpu_tensor(g, {n});
    const AdamWArgs args{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 7};
    G().adamw_update(gp, gg, gm, gv, args);
    H().adamw_update(cp, cg, cm, cv, args);
    EXPECT_CLOSE(gp, cp, DType::F32);
    EXPECT_CLOSE(gm, cm, DType::F32);
    EXPECT_CLOSE(gv, cv, DType::F32);
    const double want = H().sum_squares(cg), got = G().sum_squares(gg);
    EXPECT_NEAR(got, want, 1e-10 * want);
    EXPECT_EQ(got, G().sum_squares(gg));  // deterministic
  }
  // A misaligned view takes the scalar path.
  Vec p = randn(37, 64), g = randn(37, 65);
  Tensor gp = gpu_tensor(p, {37}, DType::F32), gg = gpu_tensor(g, {37}, DType::F32);
  Tensor gm = zeros({37}, DType::F32, Device::CUDA), gv = zeros({37}, DType::F32, Device::CUDA);
  Tensor cp = cpu_tensor(p, {37}), cg = cpu_tensor(g, {37}), cm = zeros({37}), cv = zeros({37});
  Tensor gp1 = gp.slice(1, {36}), gg1 = gg.slice(1, {36}), gm1 = gm.slice(1, {36}), gv1 = gv.slice(1, {36});
  Tensor cp1 = cp.slice(1, {36}), cg1 = cg.slice(1, {36}), cm1 = cm.slice(1, {36}), cv1 = cv.slice(1, {36});
  const AdamWArgs args{1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1};
  G().adamw_update(gp1, gg1, gm1, gv1, args);
  H().adamw_update(cp1, cg1, cm1, cv1, args);
  EXPECT_CLOSE(gp, cp, DType::F32);
}

// Backward ops run twice from the same state give the same bits (no atomics races).
TEST(CudaOps, DeterministicBackward) {
  REQUIRE_GPU();
  for (DType dt : kFloatTypes) {
    SCOPED_TRACE(dtype_name(dt));
    const int B = 4, T = 96, C = 64, V = 50, NH = 4;  // V small: many repeated tokens
    auto ids = random_ids(size_t(B * T), V, 70);
    Tensor tok = ints(ids, {B, T}, Device::CUDA);
    Tensor dout = gpu_tensor(randn(size_t(B * T * C), 71), {B, T, C}, dt);
    Tensor qkv = gpu_tensor(randn(size_t(B * T * 3 * C), 72), {B, T, 3 * C}, dt);
    Tensor out = empty({B, T, C}, dt, Device::CUDA), lse = empty({B, NH, T}, DType::F32, Device::CUDA);
    G().attention_forward(out, lse, qkv, NH);
    Tensor w = gpu_tensor(randn(size_t(C), 73), {C}, DType::F32);
    Tensor mean = empty({B * T}, DType::F32, Device::CUDA), rstd = empty({B * T}, DType::F32, Device::CUDA);
    Tensor ln = empty({B * T, C}, dt, Device::CUDA);
    G().layernorm_forward(ln, mean, rstd, dout.view({B * T, C}), w, w);
    Tensor mw = gpu_tensor(randn(size_t(C * C), 74), {C, C}, dt);

    auto run = [&](Tensor* grads) {
      for (int i = 0; i < 8; ++i) zero_(grads[i]);
      G().encoder_backward(grads[0], grads[1], dout, tok);
      G().attention_backward(grads[2], dout, out, lse, qkv, NH);
      G().layernorm_backward(grads[3], grads[4], grads[5], dout.view({B * T, C}), ln, w, mean, rstd);
      G().matmul_backward(&grads[7], grads[6], &grads[5], dout.view({B * T, C}), ln, mw);
      G().synchronize();
    };
    auto make = [&] {
      std::vector<Tensor> g;
      g.push_back(empty({V, C}, DType::F32, Device::CUDA));
      g.push_back(empty({T, C}, DType::F32, Device::CUDA));
      g.push_back(empty({B, T, 3 * C}, dt, Device::CUDA));
      g.push_back(empty({B * T, C}, dt, Device::CUDA));
      g.push_back(empty({C}, DType::F32, Device::CUDA));
      g.push_back(empty({C}, DType::F32, Device::CUDA));
      g.push_back(empty({C, C}, DType::F32, Device::CUDA));
      g.push_back(empty({B * T, C}, dt, Device::CUDA));  // the matmul's (overwritten) dinp
      return g;
    };
    auto a = make(), b = make();
    run(a.data());
    run(b.data());
    for (int i = 0; i < 8; ++i) EXPECT_TRUE(bit_identical(a[i], b[i])) << "gradient " << i;
  }
}

}  // namespace
}  // namespace gpt
