// core/cuda/encoder.cu's kernels on the CPU under cuda_emulator.h (label `unit`),
// against the CPU backend: the embedding forward, and the backward (dwpe summed over
// the batch; dwte by token segments after the sort, both accumulating), for f32 and
// bf16 activations and parameters, with repeated tokens. And ids outside [0, V), which
// the kernels see before the asynchronous range check reports them: zero rows forward,
// nothing added to dwte backward, no access outside wte or dwte (ASan). The launcher's
// cub::DeviceRadixSort::SortPairs (stable, by token, on the launcher's key bits) is
// stood in for by std::stable_sort here: the sort itself is CUB's and not tested; the
// kernels around it are, with the launcher's grids and blocks.
#include <algorithm>
#include <climits>
#include <numeric>

#include "encoder_kernels.inc"

#include "emu_op_test_support.h"

namespace {

using namespace emu_test;

struct Case {
  DType act, param;
  int B, T, C, V;
};
std::ostream& operator<<(std::ostream& o, const Case& c) {
  return o << gpt::dtype_name(c.act) << "_params_" << gpt::dtype_name(c.param) << "_B" << c.B
           << "_T" << c.T << "_C" << c.C << "_V" << c.V;
}

template <class T>
void backward_emu(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens, int B,
                  int T_, int C, int V, unsigned seed) {
  using namespace gpt::cuda;
  const int N = B * T_;
  std::vector<unsigned> keys(size_t(N), 0xdeadbeefu), pos(size_t(N), 0xdeadbeefu);
  emu::launch(dim3(unsigned((N + kThreads - 1) / kThreads)), kThreads, 0, seed, [&] {
    encoder_sort_input_kernel(keys.data(), pos.data(), tokens.i32(), N, unsigned(V));
  });
  // cub::DeviceRadixSort::SortPairs: stable, ascending keys, on the launcher's bits
  // [0, sort_key_bits(V)) only.
  const unsigned mask = unsigned((uint64_t(1) << sort_key_bits(V)) - 1);
  const size_t count = keys.size();
  std::vector<size_t> order(count);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return (keys[a] & mask) < (keys[b] & mask); });
  std::vector<unsigned> keys_out(count), pos_out(count);
  for (size_t i = 0; i < count; ++i) {
    keys_out[i] = keys[order[i]];
    pos_out[i] = pos[order[i]];
  }
  // Sorted on all their bits too, or a token's positions would not be one segment (as
  // a bad id's raw bits could make them: encoder_sort_input_kernel keys those as V).
  EXPECT_TRUE(std::is_sorted(keys_out.begin(), keys_out.end())) << "a token split in segments";
  emu::launch(dim3(unsigned(N)), kSegmentThreads, 0, seed + 100, [&] {
    encoder_backward_wte_kernel<T>(any(dwte), dout.data<T>(), keys_out.data(), pos_out.data(), N,
                                   C, unsigned(V));
  });
  const size_t n = size_t(T_) * C;
  emu::launch(dim3(grid_for(n, kThreads)), kThreads, 0, seed + 200, [&] {
    encoder_backward_wpe_kernel<T>(any(dwpe), dout.data<T>(), B, T_, C);
  });
}

class EncoderEmu : public ::testing::TestWithParam<Case> {};

TEST_P(EncoderEmu, MatchesCpuBackend) {
  const Case c = GetParam();
  const int maxT = c.T + 3;  // the position table is longer than the sequence
  Tensor tokens = gpt::empty({c.B, c.T}, DType::I32);
  std::mt19937 rng(91);
  for (int i = 0; i < c.B * c.T; ++i) tokens.i32()[i] = int(rng() % unsigned(c.V));
  tokens.i32()[0] = c.V - 1;
  const Tensor wte = tensor({c.V, c.C}, c.param, randn(size_t(c.V) * c.C, 92));
  const Tensor wpe = tensor({maxT, c.C}, c.param, randn(size_t(maxT) * c.C, 93));
  const size_t NC = size_t(c.B) * c.T * c.C;
  Tensor out = tensor({c.B, c.T, c.C}, c.act, std::vector<float>(NC, NAN)), ref = clone(out);
  const Tensor dout = tensor({c.B, c.T, c.C}, c.act, randn(NC, 94));
  Tensor dwte = tensor({c.V, c.C}, c.param, randn(size_t(c.V) * c.C, 95, 0.1f));
  Tensor dwpe = tensor({maxT, c.C}, c.param, randn(size_t(maxT) * c.C, 96, 0.1f));
  Tensor ref_dwte = clone(dwte), ref_dwpe = clone(dwpe);
  Tensor again_dwte = clone(dwte), again_dwpe = clone(dwpe);

  using gpt::cuda::grid_for;
  const size_t total = NC;
  auto forward = [&](auto tag) {
    using T = decltype(tag);
    emu::launch(dim3(grid_for(total, gpt::cuda::kThreads)), gpt::cuda::kThreads, 0, 1, [&] {
      gpt::cuda::encoder_forward_kernel<T>(out.data<T>(), tokens.i32(), any(wte), any(wpe), c.T,
                                           c.C, unsigned(c.V), total);
    });
    backward_emu<T>(dwte, dwpe, dout, tokens, c.B, c.T, c.C, c.V, 1);
    backward_emu<T>(again_dwte, again_dwpe, dout, tokens, c.B, c.T, c.C, c.V, 555);
  };
  if (c.act == DType::F32)
    forward(float{});
  else
    forward(bf16{});
  gpt::cpu_ops().encoder_forward(ref, tokens, wte, wpe);
  gpt::cpu_ops().encoder_backward(ref_dwte, ref_dwpe, dout, tokens);
  EXPECT_EQ(same_bits(out, ref), "") << "out (one rounding: exact)";
  EXPECT_EQ(close_to(dwte, ref_dwte), "") << "dwte";
  EXPECT_EQ(close_to(dwpe, ref_dwpe), "") << "dwpe";
  EXPECT_EQ(same_bits(dwte, again_dwte), "") << "dwte, two schedules";
  EXPECT_EQ(same_bits(dwpe, again_dwpe), "") << "dwpe, two schedules";
}

// Bad ids: V (the row just past wte's end, which ASan sees: CPU tensors are rounded up
// to 64 bytes, and C = 16 floats leaves no slack after wte), -1, INT_MAX and INT_MIN,
// repeated, and at the first and last positions. Good positions must come out as the
// CPU backend gives them.
TEST(EncoderEmuBadIds, StayInBoundsAndLeaveTheGoodRowsRight) {
  const int B = 2, T = 12, C = 16, V = 7;
  const int N = B * T;
  Tensor tokens = gpt::empty({B, T}, DType::I32);
  for (int i = 0; i < N; ++i) tokens.i32()[i] = (i * 5) % V;
  const std::vector<std::pair<int, int32_t>> bad = {
      {0, V}, {3, -1}, {7, INT_MAX}, {8, INT_MIN}, {13, V}, {N - 1, V}};
  // The CPU reference sees good ids in the bad positions, and zero gradient rows there.
  Tensor fixed = clone(tokens);
  for (auto [i, id] : bad) tokens.i32()[i] = id;
  const Tensor wte = tensor({V, C}, DType::F32, randn(size_t(V) * C, 81));
  const Tensor wpe = tensor({T, C}, DType::F32, randn(size_t(T) * C, 82));
  Tensor out = tensor({B, T, C}, DType::F32, std::vector<float>(size_t(N) * C, NAN));
  Tensor ref = clone(out);
  std::vector<float> dout_values = randn(size_t(N) * C, 83), masked = dout_values;
  for (auto [i, id] : bad) std::fill_n(masked.begin() + ptrdiff_t(i) * C, C, 0.f);
  const Tensor dout = tensor({B, T, C}, DType::F32, dout_values);
  const Tensor dout_masked = tensor({B, T, C}, DType::F32, masked);
  Tensor dwte = tensor({V, C}, DType::F32, randn(size_t(V) * C, 84, 0.1f));
  Tensor dwpe = tensor({T, C}, DType::F32, randn(size_t(T) * C, 85, 0.1f));
  Tensor ref_dwte = clone(dwte), ref_dwpe = clone(dwpe);
  Tensor unused_dwte = clone(dwte), unused_dwpe = clone(dwpe);

  using namespace gpt::cuda;
  const size_t total = size_t(N) * C;
  emu::launch(dim3(grid_for(total, kThreads)), kThreads, 0, 1, [&] {
    encoder_forward_kernel<float>(out.f32(), tokens.i32(), any(wte), any(wpe), T, C, unsigned(V),
                                  total);
  });
  backward_emu<float>(dwte, dwpe, dout, tokens, B, T, C, V, 3);

  gpt::cpu_ops().encoder_forward(ref, fixed, wte, wpe);
  for (auto [i, id] : bad) std::fill_n(ref.f32() + size_t(i) * C, C, 0.f);
  gpt::cpu_ops().encoder_backward(ref_dwte, unused_dwpe, dout_masked, fixed);
  gpt::cpu_ops().encoder_backward(unused_dwte, ref_dwpe, dout, fixed);
  EXPECT_EQ(same_bits(out, ref), "") << "out: bad rows zero, the others exact";
  EXPECT_EQ(close_to(dwte, ref_dwte), "") << "dwte: the good positions only";
  EXPECT_EQ(close_to(dwpe, ref_dwpe), "") << "dwpe: every position (no token involved)";
}

INSTANTIATE_TEST_SUITE_P(Shapes, EncoderEmu,
                         ::testing::Values(Case{DType::F32, DType::F32, 3, 20, 130, 17},
                                           Case{DType::BF16, DType::BF16, 2, 9, 64, 5},
                                           Case{DType::BF16, DType::F32, 2, 9, 40, 300}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::ostringstream s;
                           s << i.param;
                           return s.str();
                         });

// The vocabulary-slice kernels: rows [24, 48) of a vocabulary of 40 (16 real rows, 8
// padding), wpe added (rank 0's lookup), then backward: the slice's rows of dwte from
// the ids it holds only (the others, past V included, are keyed out of every segment),
// the whole dwpe. Against the CPU backend's slice ops.
TEST(EncoderEmuSlice, MatchesCpuBackend) {
  using namespace gpt::cuda;
  const int B = 2, T = 9, C = 16, V = 40, Vs = 24, begin = 24;
  const int N = B * T;
  Tensor tokens = gpt::empty({B, T}, DType::I32);
  for (int i = 0; i < N; ++i) tokens.i32()[i] = (i * 7 + 3) % V;  // ids in and out of the slice, repeated
  tokens.i32()[4] = V - 1;
  const Tensor wte = tensor({Vs, C}, DType::F32, randn(size_t(Vs) * C, 61));
  const Tensor wpe = tensor({T, C}, DType::F32, randn(size_t(T) * C, 62));
  Tensor out = tensor({B, T, C}, DType::F32, std::vector<float>(size_t(N) * C, NAN)), ref = clone(out);
  const size_t total = size_t(N) * C;
  emu::launch(dim3(grid_for(total, kThreads)), kThreads, 0, 1, [&] {
    encoder_slice_forward_kernel<float>(out.f32(), tokens.i32(), any(wte), any(wpe), true, T, C,
                                        (long long)begin, (long long)Vs, total);
  });
  gpt::cpu_ops().encoder_slice_forward(ref, tokens, wte, &wpe, begin, V);
  EXPECT_EQ(same_bits(out, ref), "") << "out";

  const Tensor dout = tensor({B, T, C}, DType::F32, randn(total, 63));
  Tensor dwte = tensor({Vs, C}, DType::F32, randn(size_t(Vs) * C, 64, 0.1f)), ref_dwte = clone(dwte);
  Tensor dwpe = tensor({T, C}, DType::F32, randn(size_t(T) * C, 65, 0.1f)), ref_dwpe = clone(dwpe);
  std::vector<unsigned> keys(static_cast<size_t>(N)), pos(static_cast<size_t>(N));
  emu::launch(dim3(unsigned((N + kThreads - 1) / kThreads)), kThreads, 0, 2, [&] {
    encoder_slice_sort_input_kernel(keys.data(), pos.data(), tokens.i32(), N, (long long)begin, unsigned(Vs));
  });
  for (int i = 0; i < N; ++i) {
    const int row = tokens.i32()[i] - begin;
    EXPECT_EQ(keys[size_t(i)], row >= 0 && row < Vs ? unsigned(row) : unsigned(Vs)) << "position " << i;
  }
  // cub's stable radix sort, stood in for as in backward_emu.
  std::vector<size_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  std::vector<unsigned> keys_out(static_cast<size_t>(N)), pos_out(static_cast<size_t>(N));
  for (size_t i = 0; i < size_t(N); ++i) keys_out[i] = keys[order[i]], pos_out[i] = pos[order[i]];
  emu::launch(dim3(unsigned(N)), kSegmentThreads, 0, 3, [&] {
    encoder_backward_wte_kernel<float>(any(dwte), dout.f32(), keys_out.data(), pos_out.data(), N, C, unsigned(Vs));
  });
  emu::launch(dim3(grid_for(size_t(T) * C, kThreads)), kThreads, 0, 4, [&] {
    encoder_backward_wpe_kernel<float>(any(dwpe), dout.f32(), B, T, C);
  });
  gpt::cpu_ops().encoder_slice_backward(ref_dwte, ref_dwpe, dout, tokens, begin);
  EXPECT_EQ(close_to(dwte, ref_dwte), "") << "dwte";
  EXPECT_EQ(close_to(dwpe, ref_dwpe), "") << "dwpe";
}

}  // namespace
