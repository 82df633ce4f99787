// core/cuda/moe_rows.cu's kernels on the CPU under cuda_emulator.h (label `unit`), against
// the CPU backend (core/cpu/moe_rows.cpp) on a random routing: each assignment kept in a
// distinct row of an experts' buffer with spare rows past the kept ones (sized for a
// bound, as the layer's), or dropped (-1). Shapes: C = 37 and 5 (not multiples of 32, and
// under a warp for the backward's dot products), k = 1 and 2, many drops and none; one
// case with a single block so every grid-stride loop goes round.
//  * gather: bit-identical (a copy); rows past the kept ones untouched (NaN stays NaN);
//  * combine: accumulates onto a random base, within f32 tolerance (the CPU may fuse
//    the multiply-add differently);
//  * combine backward: d(expert_out) on kept rows (others untouched), d(weight) (0 for
//    dropped) within tolerance (the warp sums in a tree), and bit-identical under two
//    schedules (its warp shuffles);
//  * scatter-add: bit-identical (the same additions in the same choice order).
// Each launch mirrors its launcher.
#include "moe_rows_kernels.inc"

#include <algorithm>
#include <numeric>

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct MoeRowsCase {
  int N, C, k;
  float drop;  // probability that an assignment is dropped
  size_t max_blocks;
};
std::ostream& operator<<(std::ostream& o, const MoeRowsCase& c) {
  return o << "N" << c.N << "_C" << c.C << "_k" << c.k << "_drop" << int(c.drop * 100) << "_blocks"
           << c.max_blocks;
}

// A routing: row[t k + j] a distinct row of [0, R) or -1; row_token[r] for the kept rows
// 0..kept-1 (kept rows numbered in a shuffled order, as experts reorder them).
struct Routing {
  std::vector<int32_t> row, row_token;
  int kept = 0, R = 0;
};
Routing make_routing(const MoeRowsCase& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Routing r;
  std::vector<int> kept_assignments;
  for (int i = 0; i < c.N * c.k; ++i)
    if (u(rng) >= c.drop) kept_assignments.push_back(i);
  r.kept = int(kept_assignments.size());
  r.R = r.kept + 3;  // spare rows past the kept ones
  std::vector<int32_t> rows(size_t(r.kept));
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), rng);
  r.row.assign(size_t(c.N * c.k), -1);
  r.row_token.assign(size_t(r.R), -7);  // spare entries: never read
  for (int i = 0; i < r.kept; ++i) {
    const int a = kept_assignments[size_t(i)];
    r.row[size_t(a)] = rows[size_t(i)];
    r.row_token[size_t(rows[size_t(i)])] = a / c.k;
  }
  return r;
}

Tensor i32_tensor(const std::vector<int32_t>& v) {
  Tensor t = gpt::empty({int64_t(v.size())}, DType::I32);
  std::copy(v.begin(), v.end(), t.i32());
  return t;
}

class MoeRowsEmu : public ::testing::TestWithParam<MoeRowsCase> {};

TEST_P(MoeRowsEmu, MatchesCpuBackend) {
  using namespace gpt::cuda;
  const MoeRowsCase c = GetParam();
  const Routing rt = make_routing(c, 5);
  const int N = c.N, C = c.C, k = c.k, R = rt.R;
  const size_t nC = size_t(N) * C, RC = size_t(R) * C;
  Tensor row = i32_tensor(rt.row), row_token = i32_tensor(rt.row_token);
  Tensor weight = tensor({N * k}, DType::F32, randn(size_t(N * k), 11));
  Tensor x = tensor({N, C}, DType::F32, randn(nC, 12));
  const std::vector<float> nan_rows(RC, NAN);
  const int block = kMoeThreads;

  // Gather.
  Tensor gathered = tensor({R, C}, DType::F32, nan_rows), ref_gathered = clone(gathered);
  const size_t gn = size_t(rt.kept) * C;
  emu::launch(dim3(grid_for(gn, kMoeThreads, c.max_blocks)), block, 0, 1, [&] {
    moe_gather_rows_kernel(gathered.f32(), x.f32(), row_token.i32(), gn, C, unsigned(N));
  });
  gpt::cpu_ops().moe_gather_rows(ref_gathered, x, row_token, rt.kept);
  EXPECT_EQ(same_bits(gathered, ref_gathered), "") << "gather";

  // Combine, onto a random base (the shared experts' output).
  std::vector<float> eo = randn(RC, 13);
  for (size_t i = size_t(rt.kept) * C; i < RC; ++i) eo[i] = NAN;  // unused rows: never read
  Tensor expert_out = tensor({R, C}, DType::F32, eo);
  Tensor out = tensor({N, C}, DType::F32, randn(nC, 14)), ref_out = clone(out);
  emu::launch(dim3(grid_for(nC, kMoeThreads, c.max_blocks)), block, 0, 2, [&] {
    moe_combine_kernel(out.f32(), expert_out.f32(), row.i32(), weight.f32(), nC, C, k, unsigned(R));
  });
  gpt::cpu_ops().moe_combine(ref_out, expert_out, row, weight, k);
  EXPECT_EQ(close_to(out, ref_out), "") << "combine";

  // Combine backward, under two schedules.
  Tensor dout = tensor({N, C}, DType::F32, randn(nC, 15));
  const size_t assignments = size_t(N) * k;
  const int warps_per_block = kMoeThreads / 32;
  Tensor ref_deo = tensor({R, C}, DType::F32, nan_rows);
  Tensor ref_dw = tensor({N * k}, DType::F32, std::vector<float>(size_t(N * k), NAN));
  gpt::cpu_ops().moe_combine_backward(ref_deo, ref_dw, dout, expert_out, row, weight, k);
  Tensor first_deo, first_dw;
  for (unsigned seed : {3u, 4u}) {
    Tensor deo = tensor({R, C}, DType::F32, nan_rows);
    Tensor dw = tensor({N * k}, DType::F32, std::vector<float>(size_t(N * k), NAN));
    emu::launch(dim3(grid_for(assignments, warps_per_block, c.max_blocks)), block, 0, seed, [&] {
      moe_combine_backward_kernel(deo.f32(), dw.f32(), dout.f32(), expert_out.f32(), row.i32(),
                                  weight.f32(), assignments, C, k, unsigned(R));
    });
    EXPECT_EQ(close_to(deo, ref_deo), "") << "d_expert_out, seed " << seed;
    EXPECT_EQ(close_to(dw, ref_dw), "") << "dweight, seed " << seed;
    if (!first_deo.defined()) {
      first_deo = deo, first_dw = dw;
    } else {
      EXPECT_EQ(same_bits(deo, first_deo), "") << "d_expert_out depends on the schedule";
      EXPECT_EQ(same_bits(dw, first_dw), "") << "dweight depends on the schedule";
    }
  }
  const std::vector<float> dw_host = host(first_dw);
  for (int i = 0; i < N * k; ++i) {
    if (rt.row[size_t(i)] < 0) {
      EXPECT_EQ(dw_host[size_t(i)], 0.f) << "dropped assignment " << i;
    }
  }

  // Scatter-add onto a random base (the router's and shared experts' part of dx).
  Tensor din = tensor({R, C}, DType::F32, eo);
  Tensor dx = tensor({N, C}, DType::F32, randn(nC, 16)), ref_dx = clone(dx);
  emu::launch(dim3(grid_for(nC, kMoeThreads, c.max_blocks)), block, 0, 5, [&] {
    moe_scatter_add_rows_kernel(dx.f32(), din.f32(), row.i32(), nC, C, k, unsigned(R));
  });
  gpt::cpu_ops().moe_scatter_add_rows(ref_dx, din, row, k);
  EXPECT_EQ(same_bits(dx, ref_dx), "") << "scatter-add";
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeRowsEmu,
                         ::testing::Values(MoeRowsCase{13, 37, 2, 0.3f, 65536},
                                           MoeRowsCase{11, 5, 1, 0.4f, 65536},
                                           MoeRowsCase{9, 37, 1, 0.f, 65536},
                                           MoeRowsCase{17, 70, 2, 0.2f, 1}),
                         [](const ::testing::TestParamInfo<MoeRowsCase>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

}  // namespace
