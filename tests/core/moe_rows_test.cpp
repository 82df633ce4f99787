// The CPU backend's MoE row ops (core/cpu/moe_rows.cpp; core/ops.h, moe_*) on a case
// worked out by hand: 3 tokens, C = 2, k = 2, one assignment dropped, a buffer of 4 rows
// of which 3 are kept. Gather leaves the spare row alone; combine and scatter-add
// accumulate; the combine's backward overwrites kept rows and gives 0 for the dropped
// assignment. And a row index outside the buffer is an error naming the assignment.
// (The CUDA kernels are checked against these ops in tests/cuda_emu/moe_rows_emu_test.)
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

Tensor f32(Shape shape, const std::vector<float>& v) {
  Tensor t = empty(std::move(shape));
  from_host_f32(t, v.data());
  return t;
}
Tensor i32(const std::vector<int32_t>& v) {
  Tensor t = empty({int64_t(v.size())}, DType::I32);
  std::copy(v.begin(), v.end(), t.i32());
  return t;
}

TEST(MoeRowOps, CpuMatchesAHandCount) {
  const Ops& ops = cpu_ops();
  const int64_t k = 2;
  // Assignments (t, j) -> row: (0,0)->2, (0,1)->0, (1,0)->1, (1,1)->-1, (2,0)->-1, (2,1)->-1.
  const Tensor row = i32({2, 0, 1, -1, -1, -1});
  const Tensor row_token = i32({0, 1, 0, 99});  // row 3 is spare: never read
  const Tensor weight = f32({6}, {0.75f, 0.25f, 1.f, 0.5f, 0.5f, 0.5f});
  const Tensor x = f32({3, 2}, {1, 2, 3, 4, 5, 6});

  Tensor in = f32({4, 2}, {-1, -1, -1, -1, -1, -1, -1, -1});
  ops.moe_gather_rows(in, x, row_token, 3);
  EXPECT_EQ(to_host_f32(in), (std::vector<float>{1, 2, 3, 4, 1, 2, -1, -1}));

  const Tensor y = f32({4, 2}, {10, 20, 30, 40, 50, 60, 70, 80});
  Tensor out = f32({3, 2}, {1, 1, 1, 1, 1, 1});
  ops.moe_combine(out, y, row, weight, k);
  // t0: 1 + 0.75 (50, 60) + 0.25 (10, 20); t1: 1 + (30, 40); t2: nothing kept.
  EXPECT_EQ(to_host_f32(out), (std::vector<float>{41.f, 51.f, 31.f, 41.f, 1.f, 1.f}));

  const Tensor dout = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  Tensor dy = f32({4, 2}, {-1, -1, -1, -1, -1, -1, -1, -1});
  Tensor dw = f32({6}, {-1, -1, -1, -1, -1, -1});
  ops.moe_combine_backward(dy, dw, dout, y, row, weight, k);
  // Row 2 <- 0.75 (1, 2), row 0 <- 0.25 (1, 2), row 1 <- 1 (3, 4), row 3 untouched.
  EXPECT_EQ(to_host_f32(dy), (std::vector<float>{0.25f, 0.5f, 3, 4, 0.75f, 1.5f, -1, -1}));
  // d(weight): (1, 2) . (50, 60), (1, 2) . (10, 20), (3, 4) . (30, 40), then dropped.
  EXPECT_EQ(to_host_f32(dw), (std::vector<float>{170, 50, 250, 0, 0, 0}));

  Tensor dx = f32({3, 2}, {1, 1, 1, 1, 1, 1});
  ops.moe_scatter_add_rows(dx, y, row, k);
  // t0: 1 + (50, 60) + (10, 20); t1: 1 + (30, 40).
  EXPECT_EQ(to_host_f32(dx), (std::vector<float>{61, 81, 31, 41, 1, 1}));

  const Tensor bad = i32({2, 0, 4, -1, -1, -1});
  EXPECT_NE(error_of([&] { ops.moe_scatter_add_rows(dx, y, bad, k); }).find("assignment 2 names row 4"),
            std::string::npos);
}

}  // namespace
}  // namespace gpt
