// CPU backend memory: plain 64-byte-aligned host memory, and the argument check the
// fp32 kernels share.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

void check_f32(const Tensor& t, const char* op, const char* arg) {
  if (t.dtype != DType::F32 || t.device != Device::CPU)
    fail(std::string(op) + ": argument '" + arg + "' must be an f32 CPU tensor, got " +
         dtype_name(t.dtype) + " on " + device_name(t.device));
}

void* host_alloc(size_t bytes) {
  // Round up: aligned_alloc requires a multiple of the alignment.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) fail("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}
void host_free(void* p) { std::free(p); }
void host_zero(void* p, size_t n) { std::memset(p, 0, n); }
void host_copy(void* d, const void* s, size_t n) { std::memcpy(d, s, n); }
void host_sync() {}
void* no_stream() { return nullptr; }
void no_device(int) {}
// Free = the kernel's MemAvailable (page cache it would give back counts as free);
// MemFree alone makes a machine that just built or tokenized look full.
void host_memory(size_t* free_bytes, size_t* total_bytes) {
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

}  // namespace gpt::cpu
