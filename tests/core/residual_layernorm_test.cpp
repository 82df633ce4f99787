// The fused residual add + LayerNorm on the CPU gives the bits of add followed by
// layernorm_forward, in f32 and bf16: the model's forward uses the fused op while
// selective recomputation reruns the plain one, and gradients must not notice.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace gpt {
namespace {

// Normal-ish values with a non-zero mean (so the LayerNorm has something to remove),
// stored in dt (rounded to bf16 by convert when dt is BF16).
Tensor random_tensor(Shape shape, DType dt, uint64_t seed, float offset) {
  Tensor f = empty(shape, DType::F32);
  Rng rng(seed);
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = offset + 2.f * rng.normal();
  if (dt == DType::F32) return f;
  Tensor t = empty(shape, dt);
  cpu_ops().convert(t, f);
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.nbytes() == b.nbytes() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

struct Case {
  int64_t N, C;
};

TEST(ResidualLayernorm, EqualsAddThenLayernormBitForBit) {
  const Ops& ops = cpu_ops();
  for (Case k : {Case{1, 1}, Case{37, 61}, Case{8, 768}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      for (DType param_dt : {DType::F32, dt}) {
        SCOPED_TRACE(std::to_string(k.N) + "x" + std::to_string(k.C) + " " + dtype_name(dt) +
                     ", params " + dtype_name(param_dt));
        const Shape shape{k.N, k.C};
        Tensor a = random_tensor(shape, dt, 1, 0.5f), b = random_tensor(shape, dt, 2, 0.f);
        Tensor w = random_tensor({k.C}, param_dt, 3, 1.f);
        Tensor bias = random_tensor({k.C}, param_dt, 4, 0.f);

        Tensor sum_ref = empty(shape, dt), out_ref = empty(shape, dt);
        Tensor mean_ref = empty({k.N}), rstd_ref = empty({k.N});
        ops.add(sum_ref, a, b);
        ops.layernorm_forward(out_ref, mean_ref, rstd_ref, sum_ref, w, bias);

        Tensor sum = empty(shape, dt), out = empty(shape, dt);
        Tensor mean = empty({k.N}), rstd = empty({k.N});
        ops.residual_layernorm_forward(sum, out, mean, rstd, a, b, w, bias);
        EXPECT_TRUE(same_bits(sum, sum_ref)) << "sum";
        EXPECT_TRUE(same_bits(out, out_ref)) << "out";
        EXPECT_TRUE(same_bits(mean, mean_ref)) << "mean";
        EXPECT_TRUE(same_bits(rstd, rstd_ref)) << "rstd";

        // In place, as the block calls it: the sum overwrites a.
        Tensor a_inplace = empty(shape, dt), out2 = empty(shape, dt);
        ops.convert(a_inplace, a);  // same dtype: a copy
        ops.residual_layernorm_forward(a_inplace, out2, mean, rstd, a_inplace, b, w, bias);
        EXPECT_TRUE(same_bits(a_inplace, sum_ref)) << "in-place sum";
        EXPECT_TRUE(same_bits(out2, out_ref)) << "in-place out";
      }
    }
  }
}

}  // namespace
}  // namespace gpt
