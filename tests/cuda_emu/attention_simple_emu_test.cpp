// core/cuda/attention.cu's fp32 CUDA-core attention kernels (forward, delta, dK/dV and
// dQ backward) on the CPU under cuda_emulator.h (label `unit`), against the CPU
// backend. They are the path for f32, for bf16 head sizes that are not a multiple of 16,
// and for GPT_ATTENTION=simple. Head sizes 20, 40 and 100 use 1, 2 and 4 head-dim slots
// per lane; T = 33..40 leaves a part-filled last tile; two batches, two heads; and
// grouped-query layouts (6 query heads on 2 kv heads, multi-query on 1), the only path
// that takes them. Each launch mirrors attention_gqa_forward / attention_gqa_backward
// (grid (T tiles, NH, B), the dK/dV kernel's (T tiles, NKV, B), 128 threads, the
// shared-memory sizes), and ScheduleIndependent wants the same bits under two thread
// schedules.
#include "attention_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct Case {
  DType dt;
  int B, T, NH, HS;
  int NKV = 0;  // 0: NH (multi-head)
  int kv() const { return NKV ? NKV : NH; }
  int width() const { return (NH + 2 * kv()) * HS; }  // a qkv row
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.dt) << "_B" << c.B << "_T" << c.T << "_NH" << c.NH << "_NKV"
           << c.kv() << "_HS" << c.HS;
}

struct Buffers {
  Tensor qkv, out, lse;           // forward
  Tensor dout, ref_out, ref_lse;  // backward inputs: the CPU forward, as in training
  Tensor dqkv;                    // overwritten: NaN-filled first
};

Buffers make_buffers(const Case& c) {
  const int C = c.NH * c.HS;
  const size_t BT = size_t(c.B) * c.T;
  Buffers b;
  b.qkv = tensor({c.B, c.T, c.width()}, c.dt, randn(BT * c.width(), 81));
  b.out = tensor({c.B, c.T, C}, c.dt, std::vector<float>(BT * C, NAN));
  b.lse = tensor({c.B, c.NH, c.T}, DType::F32, std::vector<float>(size_t(c.B) * c.NH * c.T, NAN));
  b.dout = tensor({c.B, c.T, C}, c.dt, randn(BT * C, 82));
  b.ref_out = clone(b.out);
  b.ref_lse = clone(b.lse);
  gpt::cpu_ops().attention_gqa_forward(b.ref_out, b.ref_lse, b.qkv, c.NH, c.kv());
  b.dqkv = tensor({c.B, c.T, c.width()}, c.dt, std::vector<float>(BT * c.width(), NAN));
  return b;
}

template <class T> void run_kernels(const Case& c, Buffers& b, unsigned seed) {
  using namespace gpt::cuda;
  const int C = c.NH * c.HS;
  const float scale = 1.f / std::sqrt(float(c.HS));
  const QkvLayout layout{c.NH, c.kv(), c.HS};
  const dim3 grid(unsigned((c.T + kTile - 1) / kTile), unsigned(c.NH), unsigned(c.B));
  const dim3 grid_kv(unsigned((c.T + kTile - 1) / kTile), unsigned(c.kv()), unsigned(c.B));
  const size_t smem = 3 * size_t(kTile) * size_t(c.HS | 1) * sizeof(float);
  const size_t rows = size_t(c.B) * c.T * c.NH;
  std::vector<float> delta(rows, NAN);  // scratch() holds garbage
  const size_t tile_bytes = size_t(kTile) * size_t(c.HS | 1) * sizeof(float);
  const size_t smem_dkv = 4 * tile_bytes + 2 * kTile * sizeof(float);
  const size_t smem_dq = 4 * tile_bytes;
  gpt::cuda::dispatch_slots(c.HS, [&](auto slots) {
    constexpr int NS = decltype(slots)::value;
    emu::launch(grid, kThreads, smem, seed, [&] {
      attention_forward_kernel<T, NS>(b.out.data<T>(), b.lse.f32(), b.qkv.data<T>(), c.T, layout,
                                      scale);
    });
    emu::launch(dim3(grid_for(rows * 32, 256, rows * 32)), 256, 0, seed + 100, [&] {
      attention_backward_delta_kernel<T>(delta.data(), b.dout.data<T>(), b.ref_out.data<T>(),
                                         c.B, c.T, C, c.NH, c.HS);
    });
    emu::launch(grid_kv, kThreads, smem_dkv, seed + 200, [&] {
      attention_backward_dkv_kernel<T, NS>(b.dqkv.data<T>(), b.dout.data<T>(), b.ref_lse.f32(),
                                           delta.data(), b.qkv.data<T>(), c.T, layout, scale);
    });
    emu::launch(grid, kThreads, smem_dq, seed + 300, [&] {
      attention_backward_dq_kernel<T, NS>(b.dqkv.data<T>(), b.dout.data<T>(), b.ref_lse.f32(),
                                          delta.data(), b.qkv.data<T>(), c.T, layout, scale);
    });
  });
}

void run(const Case& c, Buffers& b, unsigned seed) {
  if (c.dt == DType::F32)
    run_kernels<float>(c, b, seed);
  else
    run_kernels<bf16>(c, b, seed);
}

class AttentionSimpleEmu : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionSimpleEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  Buffers b = make_buffers(c);
  // Zeros, not NaN: close_to lets NaN match NaN, so a reference left unwritten must not
  // stand beside an unwritten result.
  Tensor ref_dqkv = tensor(b.dqkv.shape, c.dt, std::vector<float>(size_t(b.dqkv.numel()), 0.f));
  run(c, b, 1);
  gpt::cpu_ops().attention_gqa_backward(ref_dqkv, b.dout, b.ref_out, b.ref_lse, b.qkv, c.NH,
                                        c.kv());
  EXPECT_EQ(close_to(b.out, b.ref_out), "") << "out";
  EXPECT_EQ(close_to(host(b.lse), host(b.ref_lse), tolerance(DType::F32)), "") << "lse";
  EXPECT_EQ(close_to(b.dqkv, ref_dqkv), "") << "dqkv";
}

TEST_P(AttentionSimpleEmu, ScheduleIndependent) {
  const Case c = GetParam();
  Buffers x = make_buffers(c), y = make_buffers(c);
  run(c, x, 1);
  run(c, y, 4242);
  EXPECT_EQ(same_bits(x.out, y.out), "") << "out";
  EXPECT_EQ(same_bits(x.lse, y.lse), "") << "lse";
  EXPECT_EQ(same_bits(x.dqkv, y.dqkv), "") << "dqkv";
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionSimpleEmu,
                         ::testing::Values(Case{DType::F32, 2, 40, 2, 20},
                                           Case{DType::BF16, 1, 33, 2, 40},
                                           Case{DType::F32, 1, 35, 1, 100},
                                           Case{DType::BF16, 1, 35, 1, 100},
                                           Case{DType::F32, 2, 37, 6, 10, 2},
                                           Case{DType::BF16, 1, 40, 6, 48, 2},
                                           Case{DType::F32, 1, 33, 4, 40, 1}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

}  // namespace
