// Token-id range checks that never make the host wait.
//
// A bad token id must end in a clear message ("target token id 99999 at position 12 is
// outside the vocabulary [0, 50257)"), but only the device can see the ids, and reading
// a verdict back at every check stalled the GPU: the classifier checks its targets once
// per row chunk, ~8 host round trips per micro-batch at GPT-2 124M. So a check is only
// queued: its kernel records the first bad position and its id in a 64-bit device word
// (one slot per check, owned by the Context), and the verdicts are read back, all
// together, by resolve_token_checks() at the calls where the backend waits for the stream
// anyway (copy_to_host, copy_from_host, synchronize, sum_squares). Meanwhile the kernels
// that consume ids bound them themselves (encoder.cu, cross_entropy.cu), so a bad id can
// give wrong values until then, never an out-of-bounds access.
#include <climits>
#include <cstdint>
#include <string>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kCheckThreads = 256;
}  // namespace

// ---- kernels ----

// Records the first id outside [lo, V): 64-bit atomicMin of (position << 32 | the id's
// 32 bits), so the smallest position wins whatever the scheduling, and its id comes
// with it (no second read of the ids on the host). The slot starts as all ones, which
// no position below 2^32 - 1 can produce (the launcher enforces that bound).
__global__ void find_bad_id_kernel(unsigned long long* first_bad, const int32_t* ids, size_t n,
                                   int lo, int V) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const int v = ids[i];
    if (v < lo || v >= V)
      atomicMin(first_bad, (static_cast<unsigned long long>(i) << 32) | uint32_t(v));
  }
}

// ---- launchers ----

void check_token_range(const Tensor& ids, int64_t V, bool allow_negative, const char* op,
                       const char* what) {
  check_dtype(ids, DType::I32, op, what);
  const size_t n = size_t(ids.numel());
  if (n == 0) return;
  if (n >= size_t(UINT32_MAX))
    fail(std::string("cuda ") + op + ": " + std::to_string(n) + " " + what +
         " ids in one call; the range check records positions in 32 bits");
  Context& c = context();
  // All slots in flight: read them back first. The one case where a check waits.
  if (c.pending_token_checks.size() == size_t(kTokenCheckSlots)) resolve_token_checks(op);
  unsigned long long* slot = c.token_check_slots + c.pending_token_checks.size();
  // The slot's previous verdict was read back (and the stream drained) before it was
  // handed out again, so this reset cannot overtake that read.
  GPT_CUDA_CHECK(op, cudaMemsetAsync(slot, 0xff, sizeof *slot, c.stream));
  find_bad_id_kernel<<<grid_for(n, kCheckThreads, 1024), kCheckThreads, 0, c.stream>>>(
      slot, ids.i32(), n, allow_negative ? INT_MIN : 0, int(V));
  GPT_LAUNCH_CHECK(op, "find_bad_id_kernel");
  c.pending_token_checks.push_back({op, what, V});
}

void resolve_token_checks(const char* at) {
  Context& c = context();
  if (c.pending_token_checks.empty()) return;
  // Taken off the list first: whatever happens below (a bad id, a failed copy), the
  // next call must not report these checks again.
  std::vector<PendingTokenCheck> checks;
  checks.swap(c.pending_token_checks);
  c.pending_token_checks.reserve(size_t(kTokenCheckSlots));
  unsigned long long found[kTokenCheckSlots];
  GPT_CUDA_CHECK(at, cudaMemcpyAsync(found, c.token_check_slots, checks.size() * sizeof found[0],
                                     cudaMemcpyDeviceToHost, c.stream));
  GPT_CUDA_CHECK(at, cudaStreamSynchronize(c.stream));
  for (size_t i = 0; i < checks.size(); ++i) {
    if (found[i] == ~0ull) continue;
    const PendingTokenCheck& k = checks[i];
    const unsigned long long position = found[i] >> 32;
    const int32_t value = int32_t(uint32_t(found[i] & 0xffffffffu));
    fail(std::string("cuda ") + k.op + ": " + k.what + " id " + std::to_string(value) +
         " at position " + std::to_string(position) + " is outside the vocabulary [0, " +
         std::to_string(k.V) + ") (checked on the GPU without waiting; reported at " + at +
         ")");
  }
}

}  // namespace gpt::cuda
