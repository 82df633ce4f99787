// The op profiler: while on, ops_for() routes through timing wrappers that count every
// call of the entry made and still compute what the backend computes; off, it hands
// out the backend's own table again.
#include <gtest/gtest.h>

#include "core/op_profile.h"
#include "core/tensor.h"

namespace gpt {
namespace {

TEST(OpProfile, CountsEachEntryAndLeavesResultsAlone) {
  Tensor a = zeros({1000}), b = zeros({1000}), out = zeros({1000});
  for (int i = 0; i < 1000; ++i) a.f32()[i] = 1.5f, b.f32()[i] = 2.f;
  set_op_profiling(true);
  reset_op_profile();
  const Ops& ops = ops_for(Device::CPU);
  EXPECT_NE(ops.add, cpu_ops().add);
  for (int i = 0; i < 3; ++i) ops.add(out, a, b);
  ops.scale(out, 2.f);
  const std::vector<OpTime> prof = op_profile(Device::CPU);
  set_op_profiling(false);
  EXPECT_EQ(ops_for(Device::CPU).add, cpu_ops().add);

  EXPECT_EQ(to_host_f32(out)[999], 7.f);
  ASSERT_EQ(prof.size(), 2u);  // entries never called are left out
  int64_t adds = 0, scales = 0;
  for (const OpTime& o : prof) {
    EXPECT_GE(o.seconds, 0.0);
    if (o.name == "add") adds = o.calls;
    if (o.name == "scale") scales = o.calls;
  }
  EXPECT_EQ(adds, 3);
  EXPECT_EQ(scales, 1);
  reset_op_profile();
  EXPECT_TRUE(op_profile(Device::CPU).empty());
}

}  // namespace
}  // namespace gpt
