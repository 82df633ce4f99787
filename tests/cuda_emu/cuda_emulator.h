// Host emulation of the CUDA features that core/cuda's hand-written kernels use, so
// that g++ can run them on a machine without a GPU (tests/cuda_emu/*_emu_test.cpp).
// The warp shuffles, static __shared__ arrays and the grid launch are in
// cuda_emulator_builtins.h, included at the end.
//
// Why: those kernels were grown without a GPU. This is the cheapest check that their
// synchronisation, masking, tiling and shared-memory carving are right before (and
// between) runs on real hardware, and it runs in CI on every change.
//
// What it emulates:
//  * one block at a time, its threads as fibers (ucontext) on one OS thread (OS threads
//    passing a baton spent ~10x longer in the kernel's scheduler). Exactly one runs at a
//    time; at every sync point (__syncthreads, __syncwarp, __shfl_xor_sync,
//    wmma::mma_sync, atomicMin) the scheduler hands over to a RANDOM runnable thread
//    (seeded). A missing barrier then shows up as a result that depends on the
//    schedule: the test compares runs under two seeds bit for bit;
//  * barriers that some threads never reach: reported as a deadlock (so are warp
//    shuffles that some lanes of the warp never reach);
//  * static __shared__ arrays (also inside __device__ functions): one per block, seen
//    by all its threads, NaN-filled, with a guard zone;
//  * dynamic shared memory filled with NaN (0xff bytes), so reading what no thread
//    wrote poisons the result; wmma tiles must lie inside it, and a guard zone after
//    it is checked for stray writes when the block ends;
//  * wmma 16x16x16 fragments (bf16 inputs, fp32 accumulation) whose element <-> (row,
//    col) mapping is a RANDOM permutation per fragment kind (init_layouts): code that
//    assumes the real hardware layout breaks, code that asks for it (as
//    accumulator_coords does) works;
//  * the wmma pointer alignment (32 bytes) and ldm (multiple of 16 bytes) rules;
//  * the inline-PTX wrappers of attention_mma.cu (core/cuda/attention_mma_ptx.cuh:
//    mma_m16n8k16_bf16, ldmatrix_x4, ldmatrix_x4_trans, cp_async_16, cp_async_commit,
//    cp_async_wait<N>), with the fragment layouts the PTX ISA documents (spelled out
//    once, below), ldmatrix's 16-byte row alignment and shared-memory bounds; cp.async
//    copies land late: at the thread's cp_async_wait that covers them, or at a random
//    sync point before it, so a missing wait (or a missing barrier after it) reads stale
//    or NaN shared memory.
//
// What it cannot check:
//  * the real wmma fragment layouts (the mma.sync ones are what we read in the ISA:
//    the test cannot tell if we read it wrong), tensor-core rounding and accumulation order (mma_sync
//    here sums in fp32, k in order);
//  * the real memory model: with one thread running at a time every write is seen by
//    every later read at once. mma_sync and __shfl_xor_sync make the lanes of a warp
//    meet (they exchange values), so they order shared memory like a __syncwarp here;
//    a __syncwarp whose only job a later mma_sync happens to cover goes unnoticed.
//    Missing __threadfence or volatile, bank conflicts and races between blocks
//    (blocks run one after another) go unseen too;
//  * timing, occupancy, register pressure, spills, launch bounds, the 48 KiB dynamic
//    shared-memory opt-in, and anything in the launchers (they are not compiled here:
//    each test replays its launcher's grid, block and shared memory by hand, so a
//    launcher changed without its test goes unseen).
#pragma once
#include <cuda_bf16.h>
#include <ucontext.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define GPT_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GPT_EMU_ASAN 1
#endif
#endif
// Under ASan the fiber switches are annotated; its one-time warning that it "doesn't
// fully support makecontext/swapcontext" is expected.
#ifdef GPT_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define __launch_bounds__(...)
// Kernel files keep their inline PTX in small wrapper functions in a core/cuda/*_ptx.cuh
// header, whose #include extract_kernels.cmake drops; this header provides the wrappers
// instead (mma.sync, ldmatrix, cp.async: see below). GPT_CUDA_EMULATOR tells kernel code
// that it runs here.
#define GPT_CUDA_EMULATOR 1

// The running thread's coordinates (set by the scheduler on every switch).
inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 gridDim;
inline dim3 blockDim;

namespace emu {
[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "CUDA EMULATOR ERROR: %s\n", what);
  std::abort();
}

enum class State { runnable, at_block_barrier, at_warp_barrier, done };

// One cp.async copy in flight: its destination and the 16 bytes it will write there.
struct PendingCopy {
  unsigned char* dst;
  unsigned char bytes[16];
};

struct Thread {
  ucontext_t ctx;
  char* stack = nullptr;  // from g_stack_pool
  State state = State::runnable;
  unsigned shfl_seq = 0, mma_seq = 0, ldm_seq = 0;  // which half of the exchange buffers
  std::vector<PendingCopy> open_group;             // cp.async copies not yet committed
  std::deque<std::vector<PendingCopy>> groups;     // committed, oldest first
};

struct Sched {
  int n = 0;
  std::vector<Thread> threads;
  int current = -1;  // -1: the launching (main) context
  int block_arrived = 0;
  // The runnable threads, in no particular order (pos: index in it, -1 when not
  // runnable), so that picking one costs O(1) rather than a scan of the block.
  std::vector<int> run_list, run_pos;
  int done = 0;
  std::vector<int> warp_arrived;
  std::mt19937 rng;
  const std::function<void()>* body = nullptr;
  ucontext_t main_ctx;
  const void* main_stack = nullptr;  // for the ASan fiber annotations
  size_t main_stack_size = 0;
};
inline Sched* g_sched = nullptr;
// Thread stacks, kept from block to block: allocating 256 of them per block (and, under
// ASan, poisoning them on free) took most of a small kernel's emulation time.
inline std::vector<std::unique_ptr<char[]>> g_stack_pool;
inline unsigned char* g_smem = nullptr;
inline size_t g_smem_bytes = 0;
// Static __shared__ arrays of the running block (cuda_emulator_builtins.h): made on
// first use by any of its threads, checked and freed when the block ends.
struct StaticShared {
  const void* key;
  unsigned char* mem;
  size_t bytes;
};
inline std::vector<StaticShared> g_static_smem;
constexpr size_t kStaticSmemGuard = 256;

constexpr size_t kStackBytes = size_t(256) << 10;  // sanitizers enlarge frames
constexpr size_t kSmemGuard = size_t(64) << 10;   // checked for stray writes

inline int tid() { return g_sched->current; }

// Switches from the running context to thread `next` (-1: back to the launcher).
inline void switch_to(int next, bool finished = false) {
  Sched& s = *g_sched;
  const int prev = s.current;
  if (next == prev) return;
  s.current = next;
  if (next >= 0) threadIdx = make_uint3(unsigned(next), 0, 0);
  ucontext_t* from = prev < 0 ? &s.main_ctx : &s.threads[size_t(prev)].ctx;
  ucontext_t* to = next < 0 ? &s.main_ctx : &s.threads[size_t(next)].ctx;
#ifdef GPT_EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake_stack,
                                 next < 0 ? s.main_stack : s.threads[size_t(next)].stack,
                                 next < 0 ? s.main_stack_size : kStackBytes);
#endif
  if (swapcontext(from, to) != 0) die("swapcontext");
#ifdef GPT_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  (void)finished;
}

inline void set_state(int i, State st) {
  Sched& s = *g_sched;
  Thread& t = s.threads[size_t(i)];
  if (t.state == st) return;
  if (t.state == State::runnable) {  // swap-remove from run_list
    const int p = s.run_pos[size_t(i)], last = s.run_list.back();
    s.run_list[size_t(p)] = last;
    s.run_pos[size_t(last)] = p;
    s.run_list.pop_back();
    s.run_pos[size_t(i)] = -1;
  } else if (st == State::runnable) {
    s.run_pos[size_t(i)] = int(s.run_list.size());
    s.run_list.push_back(i);
  }
  if (st == State::done) ++s.done;
  t.state = st;
}

// Hands over to a random runnable thread (possibly the caller); to the launcher when
// every thread is done; dies when the rest all wait at barriers that cannot complete.
inline void schedule(bool finished = false) {
  Sched& s = *g_sched;
  const int count = int(s.run_list.size());
  if (count == 0) {
    if (s.done != s.n) die("deadlock: threads wait at barriers nobody else reaches");
    switch_to(-1, finished);
    return;
  }
  switch_to(s.run_list[size_t(std::uniform_int_distribution<int>(0, count - 1)(s.rng))], finished);
}

// Lands the oldest committed cp.async group of the running thread.
inline void land_oldest_group() {
  Thread& t = g_sched->threads[size_t(tid())];
  for (const PendingCopy& c : t.groups.front()) std::memcpy(c.dst, c.bytes, 16);
  t.groups.pop_front();
}
// A committed group may land at any moment before its wait: at each sync point, maybe
// (a coin from the schedule's generator). Late landing is what catches a missing wait.
inline void maybe_land_early() {
  Thread& t = g_sched->threads[size_t(tid())];
  if (!t.groups.empty() && (g_sched->rng() & 1u)) land_oldest_group();
}

inline void block_barrier() {
  maybe_land_early();
  Sched& s = *g_sched;
  set_state(tid(), State::at_block_barrier);
  if (++s.block_arrived == s.n) {
    s.block_arrived = 0;
    for (int i = 0; i < s.n; ++i)
      if (s.threads[size_t(i)].state == State::at_block_barrier) set_state(i, State::runnable);
  }
  schedule();
}

inline void warp_barrier() {
  maybe_land_early();
  Sched& s = *g_sched;
  const int w = tid() / 32;
  set_state(tid(), State::at_warp_barrier);
  if (++s.warp_arrived[size_t(w)] == 32) {
    s.warp_arrived[size_t(w)] = 0;
    for (int i = w * 32; i < w * 32 + 32; ++i)
      if (s.threads[size_t(i)].state == State::at_warp_barrier) set_state(i, State::runnable);
  }
  schedule();
}

inline void thread_entry() {
  Sched& s = *g_sched;
#ifdef GPT_EMU_ASAN
  // The first switch into any thread comes from the launcher or from another thread;
  // only the launcher's stack is needed later (to switch back to it).
  const void* old_stack = nullptr;
  size_t old_size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &old_stack, &old_size);
  if (s.main_stack == nullptr) {
    s.main_stack = old_stack;
    s.main_stack_size = old_size;
  }
#endif
  (*s.body)();
  // (An empty committed group is fine: a pipeline's last step may commit one.)
  Thread& me = s.threads[size_t(tid())];
  bool in_flight = !me.open_group.empty();
  for (const auto& group : me.groups) in_flight |= !group.empty();
  if (in_flight) die("a thread exits with cp.async copies never waited for");
  set_state(tid(), State::done);
  schedule(true);
  die("a finished thread was resumed");
}

// A fiber for one thread on `stack` (getcontext returns twice: kept out of loops, whose
// counters it could clobber).
inline void init_thread(Thread& t, char* stack) {
  t.stack = stack;
#ifdef GPT_EMU_ASAN
  // A previous block's frames that never returned (thread_entry's) leave poison.
  __asan_unpoison_memory_region(t.stack, kStackBytes);
#endif
  if (getcontext(&t.ctx) != 0) die("getcontext");
  t.ctx.uc_stack.ss_sp = t.stack;
  t.ctx.uc_stack.ss_size = kStackBytes;
  t.ctx.uc_link = nullptr;  // threads never return from thread_entry
  makecontext(&t.ctx, thread_entry, 0);
}

// Runs body() as every thread of block blockIdx (threads: a multiple of 32, at most
// 1024), with smem_bytes of NaN-filled dynamic shared memory; `seed` picks the schedule.
inline void run_block(int threads, size_t smem_bytes, unsigned seed,
                      const std::function<void()>& body) {
  if (threads <= 0 || threads > 1024 || threads % 32 != 0) die("block size");
  Sched s;
  s.n = threads;
  s.threads = std::vector<Thread>(size_t(threads));
  s.warp_arrived.assign(size_t(threads / 32), 0);
  for (int i = 0; i < threads; ++i) {
    s.run_list.push_back(i);
    s.run_pos.push_back(i);
  }
  s.rng.seed(seed);
  s.body = &body;
  void* mem = nullptr;
  if (posix_memalign(&mem, 128, smem_bytes + kSmemGuard)) die("posix_memalign");
  std::memset(mem, 0xff, smem_bytes + kSmemGuard);
  g_smem = static_cast<unsigned char*>(mem);
  g_smem_bytes = smem_bytes;
  g_sched = &s;
  while (g_stack_pool.size() < size_t(threads))
    g_stack_pool.emplace_back(new char[kStackBytes]);
  for (size_t i = 0; i < s.threads.size(); ++i) init_thread(s.threads[i], g_stack_pool[i].get());
  schedule();
  for (size_t i = 0; i < kSmemGuard; ++i)
    if (g_smem[smem_bytes + i] != 0xff) die("write past the end of dynamic shared memory");
  for (const StaticShared& a : g_static_smem) {
    for (size_t i = 0; i < kStaticSmemGuard; ++i)
      if (a.mem[a.bytes + i] != 0xff) die("write past the end of a static __shared__ array");
    std::free(a.mem);
  }
  g_static_smem.clear();
  std::free(mem);
  g_sched = nullptr;
  g_smem = nullptr;
  g_smem_bytes = 0;
}

// Per-warp exchange buffers, double-buffered by each lane's sequence number: a fast
// lane may start the next exchange while a slow one still reads this one.
struct WarpBufs {
  uint64_t shfl[2][32];  // any shuffled type up to 8 bytes (cuda_emulator_builtins.h)
  float a[2][16][16], b[2][16][16], c[2][16][16];
  const uint16_t* ldm_rows[2][32];  // ldmatrix row addresses
};
inline WarpBufs g_warp[32];

inline unsigned char* smem() { return g_smem; }
inline int lane() { return tid() % 32; }

// Scrambled fragment layouts: (lane, element) -> row * 16 + col, one permutation of the
// 256 positions per fragment kind (0: matrix_a, 1: matrix_b, 2: accumulator).
inline int g_layout[3][32][8];
inline void init_layouts(unsigned seed) {
  std::mt19937 rng(seed);
  for (int u = 0; u < 3; ++u) {
    std::vector<int> p(256);
    for (int i = 0; i < 256; ++i) p[size_t(i)] = i;
    std::shuffle(p.begin(), p.end(), rng);
    for (int l = 0; l < 32; ++l)
      for (int e = 0; e < 8; ++e) g_layout[u][l][e] = p[size_t(l * 8 + e)];
  }
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_barrier(); }
using std::max;
using std::min;

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use> constexpr int use_id() {
  if constexpr (std::is_same_v<Use, matrix_a>) return 0;
  else if constexpr (std::is_same_v<Use, matrix_b>) return 1;
  else return 2;
}

template <class Use, int M, int N, int K, class T, class L = void> struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16");
  enum { num_elements = 8 };
  T x[8];
};

// The alignment and ldm rules, and for a tile in shared memory, that all of it is there.
inline void check_ptr(const void* p, unsigned ldm, size_t elem) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) emu::die("wmma pointer not 256-bit aligned");
  if ((ldm * elem) % 16 != 0) emu::die("wmma ldm not a multiple of 16 bytes");
  const auto* first = static_cast<const unsigned char*>(p);
  const unsigned char* smem_end = emu::g_smem + emu::g_smem_bytes;
  if (first >= emu::g_smem && first < smem_end + emu::kSmemGuard &&
      first + (size_t(15) * ldm + 16) * elem > smem_end)
    emu::die("wmma tile reaches past the end of dynamic shared memory");
}

// matrix_a: logical (m, k); matrix_b: logical (k, n).
template <class Use, class T, class L>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>);
  check_ptr(p, ldm, sizeof(T));
  constexpr int u = use_id<Use>();
  for (int e = 0; e < 8; ++e) {
    const int idx = emu::g_layout[u][emu::lane()][e], r = idx / 16, c = idx % 16;
    f.x[e] = std::is_same_v<L, row_major> ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t l) {
  check_ptr(p, ldm, 4);
  for (int e = 0; e < 8; ++e) {
    const int idx = emu::g_layout[2][emu::lane()][e], r = idx / 16, c = idx % 16;
    f.x[e] = l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t l) {
  check_ptr(p, ldm, 4);
  for (int e = 0; e < 8; ++e) {
    const int idx = emu::g_layout[2][emu::lane()][e], r = idx / 16, c = idx % 16;
    (l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[e];
  }
}
template <class Use, class T, class L> void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, T v) {
  for (int e = 0; e < 8; ++e) f.x[e] = v;
}
// Every lane deposits its elements in the warp's buffers, waits for the warp, then
// computes its own elements of D = A B + C.
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
              const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  const int ln = emu::lane();
  emu::Thread& t = emu::g_sched->threads[size_t(emu::tid())];
  const unsigned q = t.mma_seq++ % 2;
  auto& W = emu::g_warp[emu::tid() / 32];
  for (int e = 0; e < 8; ++e) {
    int idx = emu::g_layout[0][ln][e];
    W.a[q][idx / 16][idx % 16] = __bfloat162float(a.x[e]);
    idx = emu::g_layout[1][ln][e];
    W.b[q][idx / 16][idx % 16] = __bfloat162float(b.x[e]);
    idx = emu::g_layout[2][ln][e];
    W.c[q][idx / 16][idx % 16] = c.x[e];
  }
  emu::warp_barrier();
  float out[8];
  for (int e = 0; e < 8; ++e) {
    const int idx = emu::g_layout[2][ln][e], m = idx / 16, n = idx % 16;
    float acc = W.c[q][m][n];
    for (int k = 0; k < 16; ++k) acc += W.a[q][m][k] * W.b[q][k][n];
    out[e] = acc;
  }
  for (int e = 0; e < 8; ++e) d.x[e] = out[e];
}
}  // namespace nvcuda::wmma

// ---- inline-PTX stand-ins (core/cuda/attention_mma_ptx.cuh) ----
//
// Layouts from the PTX ISA, section "Matrix Fragments for mma.m16n8k16 with floating
// point type" (9.7.14.5.8 in ISA 8.x) and "ldmatrix" (9.7.14.5.15), with
// groupID g = lane >> 2 and threadID_in_group t = lane % 4; element i of a fragment sits
// in register i / 2, in its low half when i is even:
//   A (16x16, .bf16, 8 elements): row = g for a0, a1, a4, a5 and g + 8 for a2, a3, a6,
//     a7; col = 2t + (i & 1), plus 8 for i >= 4;
//   B (16x8, .bf16, 4 elements): row (k) = 2t + (i & 1), plus 8 for i >= 2; col (n) = g;
//   C, D (16x8, .f32, 4 elements): row = g for c0, c1 and g + 8 for c2, c3;
//     col = 2t + (i & 1);
//   ldmatrix .m8n8.x4 .b16: lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j;
//     lane l receives in register j matrix j's row g, columns 2t and 2t+1 (low half
//     first); with .trans, rows 2t and 2t+1 of column g.
namespace emu {
inline uint16_t bf16_bits(uint32_t reg, int half) { return uint16_t(reg >> (16 * half)); }
inline float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int mma_a_row(int lane, int i) { return lane / 4 + 8 * ((i / 2) % 2); }
inline int mma_a_col(int lane, int i) { return 2 * (lane % 4) + (i & 1) + 8 * (i / 4); }
inline int mma_b_row(int lane, int i) { return 2 * (lane % 4) + (i & 1) + 8 * (i / 2); }
inline int mma_b_col(int lane, int) { return lane / 4; }
inline int mma_c_row(int lane, int i) { return lane / 4 + 8 * (i / 2); }
inline int mma_c_col(int lane, int i) { return 2 * (lane % 4) + (i & 1); }

inline void check_smem_16(const void* p, const char* what) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) die(what);
  if (b < g_smem || b + 16 > g_smem + g_smem_bytes) die(what);
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* p, bool trans) {
  check_smem_16(p, "ldmatrix row address not 16-byte aligned or not in shared memory");
  const int ln = lane(), g = ln / 4, t = ln % 4;
  Thread& th = g_sched->threads[size_t(tid())];
  auto& rows = g_warp[tid() / 32].ldm_rows[th.ldm_seq++ % 2];
  rows[ln] = static_cast<const uint16_t*>(p);
  warp_barrier();
  for (int j = 0; j < 4; ++j) {
    uint16_t lo, hi;
    if (!trans) {
      lo = rows[8 * j + g][2 * t];
      hi = rows[8 * j + g][2 * t + 1];
    } else {
      lo = rows[8 * j + 2 * t][g];
      hi = rows[8 * j + 2 * t + 1][g];
    }
    r[j] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
}
}  // namespace emu

// d += a b, every lane depositing its fragments by the layouts above; sums in fp32, k in
// order (the hardware's order and rounding are not modelled).
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  using namespace emu;
  const int ln = lane();
  Thread& t = g_sched->threads[size_t(tid())];
  const unsigned q = t.mma_seq++ % 2;
  WarpBufs& W = g_warp[tid() / 32];
  for (int i = 0; i < 8; ++i)
    W.a[q][mma_a_row(ln, i)][mma_a_col(ln, i)] = bf16_bits_to_float(bf16_bits(a[i / 2], i % 2));
  for (int i = 0; i < 4; ++i)
    W.b[q][mma_b_row(ln, i)][mma_b_col(ln, i)] = bf16_bits_to_float(bf16_bits(b[i / 2], i % 2));
  for (int i = 0; i < 4; ++i) W.c[q][mma_c_row(ln, i)][mma_c_col(ln, i)] = d[i];
  warp_barrier();
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int m = mma_c_row(ln, i), n = mma_c_col(ln, i);
    float acc = W.c[q][m][n];
    for (int k = 0; k < 16; ++k) acc += W.a[q][m][k] * W.b[q][k][n];
    out[i] = acc;
  }
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}
inline void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* p) { emu::ldmatrix_x4(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* p) {
  emu::ldmatrix_x4(r, p, true);
}
// The source is read now (global memory does not change during a kernel here); the
// destination is written when the copy lands.
inline void cp_async_16(void* dst, const void* src, bool valid) {
  emu::check_smem_16(dst, "cp.async destination not 16-byte aligned or not in shared memory");
  if (reinterpret_cast<uintptr_t>(src) % 16 != 0) emu::die("cp.async source not 16-byte aligned");
  emu::PendingCopy c;
  c.dst = static_cast<unsigned char*>(dst);
  if (valid)
    std::memcpy(c.bytes, src, 16);
  else
    std::memset(c.bytes, 0, 16);
  emu::g_sched->threads[size_t(emu::tid())].open_group.push_back(c);
}
inline void cp_async_commit() {
  emu::Thread& t = emu::g_sched->threads[size_t(emu::tid())];
  t.groups.push_back(std::move(t.open_group));
  t.open_group.clear();
}
template <int N> void cp_async_wait() {
  emu::Thread& t = emu::g_sched->threads[size_t(emu::tid())];
  while (t.groups.size() > size_t(N)) emu::land_oldest_group();
}
#include "cuda_emulator_builtins.h"
