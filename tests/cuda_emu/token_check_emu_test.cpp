// core/cuda/token_check.cu's kernel on the CPU under cuda_emulator.h (label `unit`): the
// slot a range check leaves behind holds the FIRST bad position and the id found there,
// packed as (position << 32 | the id's bits), under several thread schedules and with
// grids capped so that threads loop. The bad positions are placed so that a larger one
// is found before a smaller one (blocks run in order here: block 0's second stride
// comes before block 1's first), which a "first writer wins" record would get wrong.
#include "token_check_kernels.inc"

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <vector>

namespace {

constexpr unsigned long long kNone = ~0ull;

unsigned long long run_check(const std::vector<int32_t>& ids, int lo, int V, size_t max_blocks,
                             unsigned seed) {
  using namespace gpt::cuda;
  unsigned long long slot = kNone;  // cudaMemsetAsync(slot, 0xff, 8) in the launcher
  emu::launch(dim3(grid_for(ids.size(), kCheckThreads, max_blocks)), kCheckThreads, 0, seed,
              [&] { find_bad_id_kernel(&slot, ids.data(), ids.size(), lo, V); });
  return slot;
}

unsigned long long packed(size_t position, int32_t id) {
  return (static_cast<unsigned long long>(position) << 32) | uint32_t(id);
}

struct Bad {
  size_t position;
  int32_t id;
};

std::vector<int32_t> ids_with(size_t n, int V, const std::vector<Bad>& bad) {
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = int32_t((i * 7919) % size_t(V));
  for (const Bad& b : bad) ids[b.position] = b.id;
  return ids;
}

TEST(TokenCheckEmu, NoBadIdLeavesTheSlotUntouched) {
  const int V = 50;
  std::vector<int32_t> ids = ids_with(3000, V, {});
  ids[0] = 0;
  ids[1] = V - 1;
  EXPECT_EQ(run_check(ids, 0, V, 1024, 1), kNone);
  ids[2] = -1;  // an ignored target, where negatives are allowed
  EXPECT_EQ(run_check(ids, INT_MIN, V, 1024, 2), kNone);
}

TEST(TokenCheckEmu, RecordsTheFirstBadPositionAndItsId) {
  const int V = 50;
  // 2 blocks of 256 over 2000 ids: block 0 sees [0, 256), [512, 768), ...; block 1
  // [256, 512), ... So block 0 finds 600 and 1500 before block 1 finds 300; inside
  // block 1, 300, 301 and 470 race.
  const std::vector<Bad> bad = {{1500, V}, {600, -3}, {470, INT_MIN}, {301, 77}, {300, INT_MAX}};
  const std::vector<int32_t> ids = ids_with(2000, V, bad);
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    SCOPED_TRACE(seed);
    EXPECT_EQ(run_check(ids, 0, V, 2, seed), packed(300, INT_MAX));
    EXPECT_EQ(run_check(ids, INT_MIN, V, 2, seed), packed(300, INT_MAX));
    EXPECT_EQ(run_check(ids, 0, V, 1024, seed), packed(300, INT_MAX));  // the launcher's cap
  }
}

TEST(TokenCheckEmu, NegativeIdsAreBadUnlessAllowed) {
  const int V = 50;
  // 3 blocks of 256 over 1000 ids: block 0 finds 900 (in its second stride) before
  // block 2 finds 700, which must replace it.
  const std::vector<int32_t> ids = ids_with(1000, V, {{900, -1}, {700, -7}, {950, V + 1}});
  for (unsigned seed : {7u, 8u, 9u}) {
    SCOPED_TRACE(seed);
    const unsigned long long got = run_check(ids, 0, V, 3, seed);
    EXPECT_EQ(got, packed(700, -7));
    EXPECT_EQ(int32_t(uint32_t(got & 0xffffffffu)), -7) << "the id comes back with its sign";
    EXPECT_EQ(got >> 32, 700u);
    // Negatives allowed (ignored targets): only V + 1 is bad.
    EXPECT_EQ(run_check(ids, INT_MIN, V, 3, seed), packed(950, V + 1));
  }
}

}  // namespace
