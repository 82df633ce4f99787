// The CPU's fused MLP backward (matmul_gelu_backward) against its two parts,
// matmul_backward then gelu_backward, which the PyTorch tests check one by one:
//  * in f32 the same bits (the fused op is the two parts with no rounding between);
//  * in bf16 the f32 result rounded once, the contract the CUDA DGELU epilogue keeps
//    (the product is never stored in bf16 before the GELU gradient is applied).
// The fused op's input gradient starts as NaN (it must be overwritten), the reference's
// as zeros, so an op that adds instead of writing cannot match; dweight and dbias start
// from a random base (they accumulate).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace gpt {
namespace {

Tensor random_f32(Shape shape, uint64_t seed, float scale = 1.f) {
  Tensor t = empty(shape, DType::F32);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = scale * rng.normal();
  return t;
}

Tensor as_dtype(const Tensor& src, DType dt) {
  Tensor t = empty(src.shape, dt);
  cpu_ops().convert(t, src);
  return t;
}

Tensor nan_filled(Shape shape, DType dt) {
  Tensor f = empty(shape, DType::F32);
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = std::nanf("");
  return as_dtype(f, dt);
}

Tensor copy_of(const Tensor& t) { return as_dtype(t, t.dtype); }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.nbytes() == b.nbytes() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

struct Case {
  int64_t N, C, OC;
};

// The separate ops on f32 tensors.
struct Reference {
  Tensor dpre, dweight, dbias;
};
Reference separate_ops(const Tensor& dout, const Tensor& inp, const Tensor& weight,
                       const Tensor& pre, const Tensor& dweight0, const Tensor& dbias0) {
  const Ops& ops = cpu_ops();
  Reference r{zeros(pre.shape), copy_of(dweight0), copy_of(dbias0)};
  Tensor dprod = zeros(pre.shape);
  ops.matmul_backward(&dprod, r.dweight, &r.dbias, dout, inp, weight);
  ops.gelu_backward(r.dpre, pre, dprod);
  return r;
}

TEST(MatmulGeluBackward, IsMatmulThenGeluBackwardRoundedOnce) {
  const Ops& ops = cpu_ops();
  for (Case k : {Case{1, 1, 1}, Case{7, 12, 5}, Case{33, 64, 19}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + "x" +
                   std::to_string(k.OC) + " " + dtype_name(dt));
      // Inputs in dt; the reference sees the same values in f32.
      const Tensor pre = as_dtype(random_f32({k.N, k.C}, 1, 2.f), dt);
      Tensor inp = empty({k.N, k.C}, dt);
      ops.gelu_forward(inp, pre);
      const Tensor weight = as_dtype(random_f32({k.OC, k.C}, 2, 0.3f), dt);
      const Tensor dout = as_dtype(random_f32({k.N, k.OC}, 3), dt);
      const Tensor dweight0 = random_f32({k.OC, k.C}, 4), dbias0 = random_f32({k.OC}, 5);

      Tensor dpre = nan_filled({k.N, k.C}, dt);
      Tensor dweight = copy_of(dweight0), dbias = copy_of(dbias0);
      ops.matmul_gelu_backward(dpre, dweight, &dbias, dout, inp, weight, pre);

      const Reference ref =
          separate_ops(as_dtype(dout, DType::F32), as_dtype(inp, DType::F32),
                       as_dtype(weight, DType::F32), as_dtype(pre, DType::F32), dweight0, dbias0);
      EXPECT_TRUE(same_bits(dpre, as_dtype(ref.dpre, dt))) << "dpre";
      EXPECT_TRUE(same_bits(dweight, ref.dweight)) << "dweight";
      EXPECT_TRUE(same_bits(dbias, ref.dbias)) << "dbias";
    }
  }
}

}  // namespace
}  // namespace gpt
