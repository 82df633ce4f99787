// The CUDA built-ins beyond attention's that the other kernel files need under the
// emulator (cuda_emulator.h includes this at its end): warp shuffles, static __shared__
// arrays, a 64-bit atomicMin, bit casts, and a grid launch. Same rules as the rest of
// the emulator: one thread runs at a time, and every warp-collective call (and the
// atomic) is a sync point where the scheduler picks a random thread.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace emu {

// A shuffle: every lane of the warp deposits its value, waits for all 32 (a warp
// barrier, so a lane that never arrives is a deadlock), then reads lane src(lane)'s.
// Only full-warp shuffles with width 32 are emulated: a partial mask would need the
// lanes outside it to be left out of the barrier, and no kernel here uses one; a
// kernel that does fails loudly rather than being tested for something else.
template <class T, class Src> T shuffle(unsigned mask, T v, int width, Src src) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a type > 8 bytes");
  if (mask != 0xffffffffu) die("shuffle with a partial lane mask (not emulated)");
  if (width != 32) die("shuffle with width != 32 (not emulated)");
  Thread& t = g_sched->threads[size_t(tid())];
  auto& buf = g_warp[tid() / 32].shfl[t.shfl_seq++ % 2];
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  buf[lane()] = bits;
  warp_barrier();
  const int from = src(lane());
  if (from < 0 || from > 31) die("shuffle source lane out of range");
  T out;
  std::memcpy(&out, &buf[from], sizeof(T));
  return out;
}

// A static `__shared__ T name[...]` (extract_kernels.cmake rewrites each into a call of
// this, with a lambda as the tag, so each declaration in each template instantiation
// is its own array): ONE array per block, seen by all its threads, NaN-filled (0xff
// bytes) when the block's first thread reaches it, with a guard zone after it.
template <class A, class Tag> A& block_shared(Tag) {
  static const char key = 0;
  for (const StaticShared& a : g_static_smem)
    if (a.key == &key) return *reinterpret_cast<A*>(a.mem);
  void* mem = nullptr;
  if (posix_memalign(&mem, 128, sizeof(A) + kStaticSmemGuard)) die("posix_memalign");
  std::memset(mem, 0xff, sizeof(A) + kStaticSmemGuard);
  g_static_smem.push_back({&key, static_cast<unsigned char*>(mem), sizeof(A)});
  return *reinterpret_cast<A*>(mem);
}

// Runs kernel() over a grid of 1D blocks, block after block (x fastest), each block
// with its own schedule seed; the launchers' <<<grid, threads, smem>>> in a call.
template <class Kernel>
void launch(dim3 grid, int threads, size_t smem, unsigned seed, Kernel&& kernel) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) die("an empty grid");
  if (grid.y > 65535 || grid.z > 65535) die("gridDim.y or gridDim.z > 65535");
  gridDim = grid;
  blockDim = dim3(unsigned(threads));
  unsigned block_seed = seed;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = make_uint3(x, y, z);
        run_block(threads, smem, block_seed++, kernel);
      }
}

}  // namespace emu

template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return emu::shuffle(mask, v, width, [&](int l) { return l ^ lane_mask; });
}
template <class T> T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return emu::shuffle(mask, v, width, [&](int) { return src_lane; });
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shuffle(mask, v, width,
                      [&](int l) { return l + int(delta) < 32 ? l + int(delta) : l; });
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shuffle(mask, v, width, [&](int l) { return l >= int(delta) ? l - int(delta) : l; });
}

// atomicMin on a 64-bit word (token_check.cu). One thread runs at a time, so the
// read-modify-write is atomic as it stands; it is also a sync point, handing over to a
// random thread first, so that the order in which a block's threads update the word
// changes with the schedule, as the hardware's does.
inline unsigned long long atomicMin(unsigned long long* address, unsigned long long val) {
  emu::schedule();
  const unsigned long long old = *address;
  if (val < old) *address = val;
  return old;
}

inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
