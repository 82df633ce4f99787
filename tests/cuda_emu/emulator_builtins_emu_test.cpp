// Self-test of cuda_emulator_builtins.h (label `unit`): what the shuffles return, that a
// static __shared__ array is one per block (not one per thread) and fresh in each
// block, that atomicMin's order follows the schedule, and that the emulator refuses
// what it does not model (partial masks) and reports lanes that never reach a shuffle.
#include <gtest/gtest.h>

#include <vector>

#include "cuda_emulator.h"

namespace {

TEST(EmulatorBuiltins, Shuffles) {
  std::vector<int> x(64), s(64), d(64), u(64);
  emu::launch(dim3(1), 64, 0, 1, [&] {
    const int me = int(threadIdx.x);
    x[size_t(me)] = __shfl_xor_sync(0xffffffffu, me, 5);
    s[size_t(me)] = __shfl_sync(0xffffffffu, me, 7);
    d[size_t(me)] = __shfl_down_sync(0xffffffffu, me, 3);
    u[size_t(me)] = __shfl_up_sync(0xffffffffu, me, 2);
  });
  for (int me = 0; me < 64; ++me) {
    const int warp = me / 32 * 32, lane = me % 32;
    EXPECT_EQ(x[size_t(me)], warp + (lane ^ 5)) << me;
    EXPECT_EQ(s[size_t(me)], warp + 7) << me;
    EXPECT_EQ(d[size_t(me)], lane + 3 < 32 ? me + 3 : me) << me;
    EXPECT_EQ(u[size_t(me)], lane >= 2 ? me - 2 : me) << me;
  }
}

// As a kernel file would declare it (extract_kernels.cmake rewrites
// `__shared__ unsigned buf[64];` into this line).
unsigned neighbour_through_shared() {
  auto& buf = emu::block_shared<unsigned[64]>([] {});
  const unsigned before = buf[(threadIdx.x + 1) % 64];  // nobody has written it yet
  __syncthreads();
  buf[threadIdx.x] = threadIdx.x + 100 * blockIdx.x;
  __syncthreads();
  return before == 0xffffffffu ? buf[(threadIdx.x + 1) % 64] : 0u;
}

TEST(EmulatorBuiltins, StaticSharedIsOnePerBlockAndFresh) {
  std::vector<unsigned> got(128);
  emu::launch(dim3(2), 64, 0, 3, [&] {
    got[blockIdx.x * 64 + threadIdx.x] = neighbour_through_shared();
  });
  for (unsigned b = 0; b < 2; ++b)
    for (unsigned t = 0; t < 64; ++t)
      EXPECT_EQ(got[b * 64 + t], (t + 1) % 64 + 100 * b) << "block " << b << ", thread " << t;
}

// atomicMin keeps the minimum, and the order in which threads reach it follows the
// schedule (it is a sync point), so a kernel whose result depends on that order gives
// different answers under different seeds.
TEST(EmulatorBuiltins, AtomicMinOrderFollowsTheSchedule) {
  auto run = [](unsigned seed, unsigned long long& word) {
    std::vector<unsigned> order;
    word = ~0ull;
    emu::launch(dim3(1), 64, 0, seed, [&] {
      atomicMin(&word, 1000ull + threadIdx.x % 7);
      order.push_back(threadIdx.x);  // no sync point in between: the atomic's order
    });
    return order;
  };
  unsigned long long a = 0, b = 0;
  const std::vector<unsigned> first = run(1, a), second = run(2, b);
  EXPECT_EQ(a, 1000ull);
  EXPECT_EQ(b, 1000ull);
  EXPECT_EQ(first.size(), 64u);
  EXPECT_NE(first, second);
}

TEST(EmulatorBuiltinsDeathTest, PartialMaskIsRefused) {
  EXPECT_DEATH(emu::launch(dim3(1), 32, 0, 1, [] { __shfl_xor_sync(0x0000ffffu, 1.f, 1); }),
               "partial lane mask");
}

TEST(EmulatorBuiltinsDeathTest, LaneThatNeverShufflesIsADeadlock) {
  EXPECT_DEATH(emu::launch(dim3(1), 32, 0, 1,
                           [] {
                             if (threadIdx.x == 3) return;
                             __shfl_xor_sync(0xffffffffu, 1.f, 1);
                           }),
               "deadlock");
}

}  // namespace
