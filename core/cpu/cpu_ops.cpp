// Assembles the CPU ops table; memory is plain 64-byte-aligned host memory.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <unistd.h>

#include "core/cpu/cpu_kernels.h"
#include "core/cpu/dtype_dispatch.h"
#include "core/error.h"

namespace gpt {
namespace cpu {

void check_f32(const Tensor& t, const char* op, const char* arg) {
  if (t.dtype != DType::F32 || t.device != Device::CPU)
    fail(std::string(op) + ": argument '" + arg + "' must be an f32 CPU tensor, got " +
         dtype_name(t.dtype) + " on " + device_name(t.device));
}

static void* host_alloc(size_t bytes) {
  // Round up: aligned_alloc requires a multiple of the alignment.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) fail("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}
static void host_free(void* p) { std::free(p); }
static void host_zero(void* p, size_t n) { std::memset(p, 0, n); }
static void host_copy(void* d, const void* s, size_t n) { std::memcpy(d, s, n); }
static void host_sync() {}
static void* no_stream() { return nullptr; }
static void no_device(int) {}
// Free = the kernel's MemAvailable (page cache it would give back counts as free);
// MemFree alone makes a machine that just built or tokenized look full.
static void host_memory(size_t* free_bytes, size_t* total_bytes) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  *total_bytes = size_t(sysconf(_SC_PHYS_PAGES)) * page;
  *free_bytes = size_t(sysconf(_SC_AVPHYS_PAGES)) * page;
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) *free_bytes = size_t(kb) * 1024;
    std::fclose(f);
  }
}

}  // namespace cpu

const Ops& cpu_ops() {
  static const Ops table = [] {
    Ops t{};
    t.name = "cpu";
    t.alloc = cpu::host_alloc;
    t.free = cpu::host_free;
    t.memset_zero = cpu::host_zero;
    t.copy_to_host = cpu::host_copy;
    t.copy_from_host = cpu::host_copy;
    t.copy_device = cpu::host_copy;
    t.synchronize = cpu::host_sync;
    t.compute_stream = cpu::no_stream;
    t.select_device = cpu::no_device;
    t.memory_info = cpu::host_memory;
    t.encoder_forward = cpu::any::encoder_forward;
    t.encoder_backward = cpu::any::encoder_backward;
    t.layernorm_forward = cpu::any::layernorm_forward;
    t.layernorm_backward = cpu::any::layernorm_backward;
    t.matmul_forward = cpu::any::matmul_forward;
    t.matmul_backward = cpu::any::matmul_backward;
    t.gelu_forward = cpu::any::gelu_forward;
    t.gelu_backward = cpu::any::gelu_backward;
    t.attention_forward = cpu::any::attention_forward;
    t.attention_backward = cpu::any::attention_backward;
    t.add = cpu::any::add;
    t.accumulate = cpu::any::accumulate;
    t.scale = cpu::any::scale;
    t.convert = cpu::convert;
    t.cross_entropy_forward = cpu::any::cross_entropy_forward;
    t.cross_entropy_backward = cpu::any::cross_entropy_backward;
    t.adamw_update = cpu::adamw_update;
    t.sum_squares = cpu::any::sum_squares;
    return t;
  }();
  return table;
}

}  // namespace gpt
