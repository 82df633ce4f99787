#include "core/op_profile.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <type_traits>

#include "core/error.h"

namespace gpt {
namespace {

constexpr int kSlots = 2;     // backends: 0 the CPU, 1 CUDA
constexpr int kEntries = 48;  // wrapped entries per table (checked when wrapping)

struct Totals {
  std::array<const char*, kEntries> names{};
  std::array<double, kEntries> seconds{};
  std::array<int64_t, kEntries> calls{};
  int used = 0;
};

std::atomic<bool> g_on{false};
std::array<const Ops*, kSlots> g_base{};
std::array<Totals, kSlots> g_totals;

// One wrapper per (backend, entry): a plain function, as the table needs, that reaches
// its backend and its slot in the totals through template arguments.
template <int Slot, auto Field> struct Timed;
template <int Slot, class R, class... A, R (*Ops::*Field)(A...)>
struct Timed<Slot, Field> {
  static inline int index = -1;
  static R call(A... args) {
    const Ops& base = *g_base[Slot];
    base.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (std::is_void_v<R>) {
      (base.*Field)(args...);
      record(base, t0);
    } else {
      R r = (base.*Field)(args...);
      record(base, t0);
      return r;
    }
  }
  // An op that throws is not counted.
  static void record(const Ops& base, std::chrono::steady_clock::time_point t0) {
    base.synchronize();
    Totals& t = g_totals[Slot];
    t.seconds[size_t(index)] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++t.calls[size_t(index)];
  }
};

template <int Slot, auto Field> void wrap(Ops& t, const char* name) {
  Totals& tot = g_totals[Slot];
  GPT_CHECK(tot.used < kEntries, "op_profile: more wrapped entries than kEntries");
  Timed<Slot, Field>::index = tot.used;
  tot.names[size_t(tot.used++)] = name;
  t.*Field = &Timed<Slot, Field>::call;
}

template <int Slot> Ops make_profiled(const Ops& base) {
  g_base[Slot] = &base;
  Ops t = base;
#define GPT_PROFILE_ENTRY(field) wrap<Slot, &Ops::field>(t, #field)
  GPT_PROFILE_ENTRY(memset_zero);
  GPT_PROFILE_ENTRY(copy_to_host);
  GPT_PROFILE_ENTRY(copy_from_host);
  GPT_PROFILE_ENTRY(copy_device);
  GPT_PROFILE_ENTRY(encoder_forward);
  GPT_PROFILE_ENTRY(encoder_backward);
  GPT_PROFILE_ENTRY(layernorm_forward);
  GPT_PROFILE_ENTRY(residual_layernorm_forward);
  GPT_PROFILE_ENTRY(layernorm_backward);
  GPT_PROFILE_ENTRY(matmul_forward);
  GPT_PROFILE_ENTRY(matmul_backward);
  GPT_PROFILE_ENTRY(gelu_forward);
  GPT_PROFILE_ENTRY(gelu_backward);
  GPT_PROFILE_ENTRY(matmul_gelu_backward);
  GPT_PROFILE_ENTRY(attention_forward);
  GPT_PROFILE_ENTRY(attention_backward);
  GPT_PROFILE_ENTRY(attention_gqa_forward);
  GPT_PROFILE_ENTRY(attention_gqa_backward);
  GPT_PROFILE_ENTRY(rmsnorm_forward);
  GPT_PROFILE_ENTRY(residual_rmsnorm_forward);
  GPT_PROFILE_ENTRY(rmsnorm_backward);
  GPT_PROFILE_ENTRY(rope_forward);
  GPT_PROFILE_ENTRY(rope_backward);
  GPT_PROFILE_ENTRY(swiglu_forward);
  GPT_PROFILE_ENTRY(swiglu_backward);
  GPT_PROFILE_ENTRY(add);
  GPT_PROFILE_ENTRY(accumulate);
  GPT_PROFILE_ENTRY(scale);
  GPT_PROFILE_ENTRY(convert);
  GPT_PROFILE_ENTRY(cross_entropy_forward);
  GPT_PROFILE_ENTRY(cross_entropy_forward_backward);
  GPT_PROFILE_ENTRY(encoder_slice_forward);
  GPT_PROFILE_ENTRY(encoder_slice_backward);
  GPT_PROFILE_ENTRY(cross_entropy_slice_stats);
  GPT_PROFILE_ENTRY(cross_entropy_slice_forward_backward);
  GPT_PROFILE_ENTRY(moe_gather_rows);
  GPT_PROFILE_ENTRY(moe_combine);
  GPT_PROFILE_ENTRY(moe_combine_backward);
  GPT_PROFILE_ENTRY(moe_scatter_add_rows);
  GPT_PROFILE_ENTRY(adamw_update);
  GPT_PROFILE_ENTRY(sum_squares);
#undef GPT_PROFILE_ENTRY
  return t;
}

int slot_of(Device d) { return d == Device::CPU ? 0 : 1; }

}  // namespace

void set_op_profiling(bool on) { g_on = on; }
bool op_profiling() { return g_on; }

const Ops& profiled_ops(const Ops& base) {
  // The CPU table is a static of its own; anything else is the CUDA backend's.
  if (&base == &cpu_ops()) {
    static const Ops cpu = make_profiled<0>(base);
    return cpu;
  }
  static const Ops cuda = make_profiled<1>(base);
  return cuda;
}

std::vector<OpTime> op_profile(Device device) {
  const Totals& t = g_totals[size_t(slot_of(device))];
  std::vector<OpTime> out;
  for (int i = 0; i < t.used; ++i)
    if (t.calls[size_t(i)] > 0) out.push_back({t.names[size_t(i)], t.seconds[size_t(i)], t.calls[size_t(i)]});
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
  return out;
}

void reset_op_profile() {
  for (Totals& t : g_totals) {
    t.seconds.fill(0);
    t.calls.fill(0);
  }
}

}  // namespace gpt
