// The CUDA backend's context, memory entries, argument checks and the ops table itself.
// cuda_ops_or_null() returns null when no GPU is usable, so CPU-only machines running
// a CUDA build behave like a build without CUDA.
#include <cstdio>
#include <cstdlib>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

// ---- context and errors ----

namespace {
// A GPT_CUDA_* switch: "1..." on, "0..." off, unset or anything else the default.
bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v && v[0] == '1') return true;
  if (v && v[0] == '0') return false;
  return fallback;
}
}  // namespace

void fail_call(const char* op, const char* call, const char* what, const char* file, int line) {
  // A failed runtime call (cudaMalloc's out of memory, say) is also left as the thread's
  // "last error"; clear it, or a caller that catches this would see the next launch check
  // blame an innocent kernel for it. Sticky errors stay: they are the context's state.
  cudaGetLastError();
  fail(std::string("cuda ") + op + ": " + call + " failed: " + what + " (" + file + ":" +
       std::to_string(line) + ")");
}

// A kernel that faults (an illegal address, say) is only reported by some later call,
// which then names the wrong op. GPT_CUDA_SYNC=1 waits for every kernel at its launch
// site, so the first failing kernel is the one named (slow: for debugging only).
void check_launch(const char* op, const char* kernel, const char* file, int line) {
  static const bool sync_each = env_flag("GPT_CUDA_SYNC", false);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_each) e = cudaStreamSynchronize(stream());
  if (e != cudaSuccess)
    fail_call(op, (std::string("launch of ") + kernel).c_str(), cudaGetErrorString(e), file, line);
}

Context& context() {
  // Leaked on purpose: see Context. A throw here leaves it unset, so the next call retries.
  static Context* ctx = [] {
    auto* c = new Context;
    const char* op = "context";
    // Non-blocking: the legacy default stream must not serialise with ours.
    GPT_CUDA_CHECK(op, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    GPT_CUBLAS_CHECK(op, cublasLtCreate(&c->lt));
    c->workspace_bytes = size_t(32) << 20;  // what cuBLASLt wants for Hopper's big tiles
    GPT_CUDA_CHECK(op, cudaMalloc(&c->workspace, c->workspace_bytes));
    GPT_CUDA_CHECK(op, cudaMalloc(reinterpret_cast<void**>(&c->token_check_slots),
                                  kTokenCheckSlots * sizeof(unsigned long long)));
    c->pending_token_checks.reserve(size_t(kTokenCheckSlots));
    c->tf32 = env_flag("GPT_CUDA_TF32", false);
    c->gelu_epilogue = env_flag("GPT_CUDA_GELU_EPILOGUE", true);
    return c;
  }();
  return *ctx;
}

void* scratch(size_t bytes, const char* op) {
  Context& c = context();
  if (bytes > c.scratch_bytes) {
    if (c.scratch) {
      // Earlier ops on the stream may still read the old buffer.
      GPT_CUDA_CHECK(op, cudaStreamSynchronize(c.stream));
      GPT_CUDA_CHECK(op, cudaFree(c.scratch));
      c.scratch = nullptr;
      c.scratch_bytes = 0;
    }
    size_t n = align_up(bytes, size_t(1) << 20);
    GPT_CUDA_CHECK(op, cudaMalloc(&c.scratch, n));
    c.scratch_bytes = n;
  }
  return c.scratch;
}

// ---- argument checks ----

void check_cuda(const Tensor& t, const char* op, const char* arg) {
  if (!t.defined() || t.device != Device::CUDA)
    fail(std::string("cuda ") + op + ": argument '" + arg + "' must be a CUDA tensor" +
         (t.defined() ? std::string(", got one on ") + device_name(t.device) : ", got none"));
}

void check_float(const Tensor& t, const char* op, const char* arg) {
  check_cuda(t, op, arg);
  if (t.dtype != DType::F32 && t.dtype != DType::BF16)
    fail(std::string("cuda ") + op + ": argument '" + arg + "' must be f32 or bf16, got " +
         dtype_name(t.dtype));
}

void check_dtype(const Tensor& t, DType dt, const char* op, const char* arg) {
  check_cuda(t, op, arg);
  if (t.dtype != dt)
    fail(std::string("cuda ") + op + ": argument '" + arg + "' must be " + dtype_name(dt) +
         ", got " + dtype_name(t.dtype));
}

void check_numel(const Tensor& t, int64_t n, const char* op, const char* arg) {
  if (t.numel() != n)
    fail(std::string("cuda ") + op + ": argument '" + arg + "' " + shape_str(t.shape) + " has " +
         std::to_string(t.numel()) + " elements, expected " + std::to_string(n));
}

// ---- memory entries ----

namespace {

std::string mib(size_t bytes) { return std::to_string((bytes + (size_t(1) << 20) - 1) >> 20) + " MiB"; }

void* device_alloc(size_t bytes) {
  context();  // created here, so device_free never has to create it
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it so the next launch check does not report it
    size_t free_bytes = 0, total_bytes = 0;
    std::string room;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
      room = ", " + mib(free_bytes) + " free of " + mib(total_bytes);
    else
      cudaGetLastError();
    fail("cuda alloc: cudaMalloc of " + std::to_string(bytes) + " bytes (" + mib(bytes) +
         ") failed: " + cudaGetErrorString(e) + room +
         " (reduce train.micro_batch, or set train.recompute)");
  }
  return p;
}

// Called from Storage's destructor, so it must not throw. Synchronizing first keeps
// kernels still queued on our stream from touching freed memory. Pending token checks
// stay pending (resolving them may throw): the next copy or synchronize reports them.
void device_free(void* p) {
  if (cudaStreamSynchronize(context().stream) == cudaSuccess) {
    cudaError_t e = cudaFree(p);
    if (e == cudaSuccess || e == cudaErrorCudartUnloading) return;
    std::fprintf(stderr, "cuda free: cudaFree failed: %s\n", cudaGetErrorString(e));
  }
}

void device_zero(void* p, size_t n) {
  GPT_CUDA_CHECK("memset_zero", cudaMemsetAsync(p, 0, n, stream()));
}

// Both host copies wait for the stream: the host buffer may be read or freed right after.
// Having waited, they also report the token checks queued so far (token_check.cu).
void device_to_host(void* dst, const void* src, size_t n) {
  GPT_CUDA_CHECK("copy_to_host", cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream()));
  GPT_CUDA_CHECK("copy_to_host", cudaStreamSynchronize(stream()));
  resolve_token_checks("copy_to_host");
}

void host_to_device(void* dst, const void* src, size_t n) {
  GPT_CUDA_CHECK("copy_from_host",
                 cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream()));
  GPT_CUDA_CHECK("copy_from_host", cudaStreamSynchronize(stream()));
  resolve_token_checks("copy_from_host");
}

void device_copy(void* dst, const void* src, size_t n) {
  GPT_CUDA_CHECK("copy_device", cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream()));
}

void device_sync() {
  GPT_CUDA_CHECK("synchronize", cudaStreamSynchronize(stream()));
  resolve_token_checks("synchronize");
}

void* compute_stream() { return stream(); }

void memory_info(size_t* free_bytes, size_t* total_bytes) {
  GPT_CUDA_CHECK("memory_info", cudaMemGetInfo(free_bytes, total_bytes));
}

// Must run before the context is created: the stream and handles belong to the device
// current at that moment.
void select_device(int local_rank) {
  int n = 0;
  GPT_CUDA_CHECK("select_device", cudaGetDeviceCount(&n));
  GPT_CUDA_CHECK("select_device", cudaSetDevice(local_rank % n));
}

bool gpu_present() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess) return n > 0;
  cudaGetLastError();  // clear the error so later calls do not report it
  // No driver at all is the ordinary CPU-only machine: say nothing. A driver that is
  // installed but cannot serve this build (older than its runtime, a broken device) is
  // said once, or every GPU test would skip as if the machine had no GPU.
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) {
    cudaRuntimeGetVersion(&runtime);
    std::fprintf(stderr,
                 "gpt: CUDA backend unavailable: cudaGetDeviceCount failed: %s (driver supports "
                 "CUDA %d.%d, this build's runtime is %d.%d)\n",
                 cudaGetErrorString(e), driver / 1000, driver % 1000 / 10, runtime / 1000,
                 runtime % 1000 / 10);
  }
  cudaGetLastError();
  return false;
}

}  // namespace
}  // namespace gpt::cuda

namespace gpt {

const Ops* cuda_ops_or_null() {
  static const bool present = cuda::gpu_present();
  if (!present) return nullptr;
  static const Ops table = [] {
    Ops t{};
    t.name = "cuda";
    t.alloc = cuda::device_alloc;
    t.free = cuda::device_free;
    t.memset_zero = cuda::device_zero;
    t.copy_to_host = cuda::device_to_host;
    t.copy_from_host = cuda::host_to_device;
    t.copy_device = cuda::device_copy;
    t.synchronize = cuda::device_sync;
    t.compute_stream = cuda::compute_stream;
    t.select_device = cuda::select_device;
    t.memory_info = cuda::memory_info;
    t.encoder_forward = cuda::encoder_forward;
    t.encoder_backward = cuda::encoder_backward;
    t.layernorm_forward = cuda::layernorm_forward;
    t.layernorm_backward = cuda::layernorm_backward;
    t.residual_layernorm_forward = cuda::residual_layernorm_forward;
    t.matmul_forward = cuda::matmul_forward;
    t.matmul_backward = cuda::matmul_backward;
    t.gelu_forward = cuda::gelu_forward;
    t.gelu_backward = cuda::gelu_backward;
    t.matmul_gelu_backward = cuda::matmul_gelu_backward;
    t.attention_forward = cuda::attention_forward;
    t.attention_backward = cuda::attention_backward;
    t.attention_gqa_forward = cuda::attention_gqa_forward;
    t.attention_gqa_backward = cuda::attention_gqa_backward;
    t.rmsnorm_forward = cuda::rmsnorm_forward;
    t.rmsnorm_backward = cuda::rmsnorm_backward;
    t.residual_rmsnorm_forward = cuda::residual_rmsnorm_forward;
    t.rope_forward = cuda::rope_forward;
    t.rope_backward = cuda::rope_backward;
    t.swiglu_forward = cuda::swiglu_forward;
    t.swiglu_backward = cuda::swiglu_backward;
    t.add = cuda::add;
    t.accumulate = cuda::accumulate;
    t.scale = cuda::scale;
    t.convert = cuda::convert;
    t.cross_entropy_forward = cuda::cross_entropy_forward;
    t.cross_entropy_forward_backward = cuda::cross_entropy_forward_backward;
    t.encoder_slice_forward = cuda::encoder_slice_forward;
    t.encoder_slice_backward = cuda::encoder_slice_backward;
    t.cross_entropy_slice_stats = cuda::cross_entropy_slice_stats;
    t.cross_entropy_slice_forward_backward = cuda::cross_entropy_slice_forward_backward;
    t.moe_gather_rows = cuda::moe_gather_rows;
    t.moe_combine = cuda::moe_combine;
    t.moe_combine_backward = cuda::moe_combine_backward;
    t.moe_scatter_add_rows = cuda::moe_scatter_add_rows;
    t.adamw_update = cuda::adamw_update;
    t.sum_squares = cuda::sum_squares;
    return t;
  }();
  return &table;
}

}  // namespace gpt
