// Softmax cross-entropy over the vocabulary: one block per row, online softmax (running
// max and rescaled sum in one pass over the logits), merged across threads in a fixed
// tree order. The fused form writes the loss and then overwrites the row with its
// gradient in place, each thread reading a logit before writing the same element (the
// logits buffer is the head's largest; no second one is needed).
//
// Targets are range-checked without waiting (token_check.cu): a target >= V is reported
// at the next call that synchronizes, after these kernels have run, so they treat such a
// row as ignored (like a negative target) rather than read past it.
#include <algorithm>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kThreads = 512;  // V ~ 50k: about 100 logits per thread
}  // namespace

// ---- kernels ----

// Merge (max, sum of exp(x - max)) pairs; a -inf max means an empty pair.
__device__ __forceinline__ void softmax_merge(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float mx = fmaxf(m, m2);
  s = s * expf(m - mx) + s2 * expf(m2 - mx);
  m = mx;
}

// (max, sum of exp(x - max)) over z[0, V), the same values (and bits) in every thread
// of the block; (-inf, 0) when V = 0.
template <class T>
__device__ void row_softmax_stats(const T* z, int V, float& m_out, float& s_out) {
  __shared__ float sm[32], ss[32];
  float m = -INFINITY, s = 0.f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = to_float(z[v]);
    if (x > m) {
      s = s * expf(m - x) + 1.f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    softmax_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = lane < warps ? sm[lane] : -INFINITY;
  s = lane < warps ? ss[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    softmax_merge(m, s, m2, s2);
  }
  m_out = m;
  s_out = s;
}

// log-sum-exp of one row, the same value (and bits) in every thread of the block.
template <class T>
__device__ float row_logsumexp(const T* z, int V) {
  float m, s;
  row_softmax_stats(z, V, m, s);
  return m + logf(s);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(float* losses, const T* logits, const int32_t* targets, int V) {
  const size_t row = blockIdx.x;
  const T* z = logits + row * size_t(V);
  const int t = targets[row];
  const float lse = row_logsumexp(z, V);
  if (threadIdx.x == 0) losses[row] = t < 0 || t >= V ? 0.f : lse - to_float(z[t]);
}

// The fused classifier: the loss and, in place, the gradient of one row. Thread 0 reads
// the target's logit before the barriers inside row_logsumexp, and every thread has
// read all its logits by then too, so the overwrite below races with no read.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_backward_kernel(float* losses, T* logits, const int32_t* targets, int V,
                                          float dloss) {
  const size_t row = blockIdx.x;
  T* z = logits + row * size_t(V);
  const int t = targets[row];
  if (t < 0 || t >= V) {  // ignored position (or a bad id): no loss, no gradient
    if (threadIdx.x == 0) losses[row] = 0.f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) z[v] = from_float<T>(0.f);
    return;
  }
  const float target_logit = threadIdx.x == 0 ? to_float(z[t]) : 0.f;
  const float lse = row_logsumexp(z, V);
  if (threadIdx.x == 0) losses[row] = lse - target_logit;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    float g = dloss * expf(to_float(z[v]) - lse);
    if (v == t) g -= dloss;
    z[v] = from_float<T>(g);
  }
}

// One vocabulary slice's softmax statistics (cross_entropy_slice_stats): the slice's
// logits [N, Vs], of which the first `real` columns are ids below V; stats [3, N].
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_slice_stats_kernel(float* stats, const T* logits, const int32_t* targets, int N,
                                     int Vs, int real, long long vocab_begin) {
  const size_t row = blockIdx.x;
  const T* z = logits + row * size_t(Vs);
  float m, s;
  row_softmax_stats(z, real, m, s);
  if (threadIdx.x == 0) {
    const int t = targets[row];
    const long long j = (long long)t - vocab_begin;  // < real only for a real id of the slice
    stats[row] = m;
    stats[size_t(N) + row] = s;
    stats[2 * size_t(N) + row] = t >= 0 && j >= 0 && j < real ? to_float(z[j]) : 0.f;
  }
}

// The loss from S slices' statistics [S, 3, N] and, with logits, the slice's gradient
// in place (cross_entropy_slice_forward_backward). Each thread combines the S triples
// itself (S is the TP size: a few), in slice order, so all agree bit for bit.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_slice_forward_backward_kernel(float* losses, T* logits, const int32_t* targets,
                                                const float* stats, int S, int N, int Vs, int real,
                                                long long vocab_begin, long long V, float dloss) {
  const size_t row = blockIdx.x;
  const int t = targets[row];
  T* z = logits ? logits + row * size_t(Vs) : nullptr;
  if (t < 0 || t >= V) {  // ignored position (or a bad id): no loss, no gradient
    if (threadIdx.x == 0) losses[row] = 0.f;
    if (z)
      for (int v = threadIdx.x; v < Vs; v += blockDim.x) z[v] = from_float<T>(0.f);
    return;
  }
  const size_t stride = 3 * size_t(N);
  float M = -INFINITY, Z = 0.f, target = 0.f;
  for (int s = 0; s < S; ++s)  // a slice without real ids has sum 0: skipped
    if (stats[s * stride + N + row] > 0.f) M = fmaxf(M, stats[s * stride + row]);
  for (int s = 0; s < S; ++s) {
    const float sum = stats[s * stride + N + row];
    if (sum > 0.f) Z += sum * expf(stats[s * stride + row] - M);
    target += stats[s * stride + 2 * N + row];
  }
  const float lse = M + logf(Z);
  if (threadIdx.x == 0) losses[row] = lse - target;
  if (!z) return;
  const long long j = (long long)t - vocab_begin;
  for (int v = threadIdx.x; v < Vs; v += blockDim.x) {
    float g = 0.f;  // padding columns
    if (v < real) {
      g = dloss * expf(to_float(z[v]) - lse);
      if (v == j) g -= dloss;
    }
    z[v] = from_float<T>(g);
  }
}

// ---- launchers ----

namespace {

// The checks both launchers share, and the queued target-range check (reported at the
// next synchronizing call; the kernels bound the ids meanwhile, so the head's once-per-
// chunk calls never wait). Returns the rows N; V is logits' last dimension.
int64_t check_args(const char* op, const Tensor& losses, const Tensor& logits,
                   const Tensor& targets) {
  check_float(logits, op, "logits");
  check_dtype(losses, DType::F32, op, "losses");
  check_dtype(targets, DType::I32, op, "targets");
  const int64_t V = logits.dim(-1), N = logits.numel() / V;
  check_numel(losses, N, op, "losses");
  check_numel(targets, N, op, "targets");
  if (N > 0) check_token_range(targets, V, true, op, "target token");
  return N;
}

}  // namespace

void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets) {
  const char* op = "cross_entropy_forward";
  const int64_t N = check_args(op, losses, logits, targets), V = logits.dim(-1);
  if (N == 0) return;
  dispatch_float(logits.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_forward_kernel<T><<<unsigned(N), kThreads, 0, stream()>>>(
        losses.f32(), logits.data<T>(), targets.i32(), int(V));
    GPT_LAUNCH_CHECK(op, "cross_entropy_forward_kernel");
  });
}

void cross_entropy_forward_backward(Tensor& losses, Tensor& logits, const Tensor& targets,
                                    float dloss) {
  const char* op = "cross_entropy_forward_backward";
  const int64_t N = check_args(op, losses, logits, targets), V = logits.dim(-1);
  if (N == 0) return;
  dispatch_float(logits.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_forward_backward_kernel<T><<<unsigned(N), kThreads, 0, stream()>>>(
        losses.f32(), logits.data<T>(), targets.i32(), int(V), dloss);
    GPT_LAUNCH_CHECK(op, "cross_entropy_forward_backward_kernel");
  });
}

namespace {

// The real (non-padding) columns of a slice of Vs columns starting at id vocab_begin.
int64_t real_columns(int64_t vocab_begin, int64_t Vs, int64_t V) {
  return std::max<int64_t>(0, std::min(Vs, V - vocab_begin));
}

}  // namespace

void cross_entropy_slice_stats(Tensor& stats, const Tensor& logits, const Tensor& targets,
                               int64_t vocab_begin, int64_t V) {
  const char* op = "cross_entropy_slice_stats";
  check_float(logits, op, "logits");
  check_dtype(stats, DType::F32, op, "stats");
  check_dtype(targets, DType::I32, op, "targets");
  const int64_t Vs = logits.dim(-1), N = logits.numel() / Vs;
  check_numel(stats, 3 * N, op, "stats");
  check_numel(targets, N, op, "targets");
  if (N == 0) return;
  check_token_range(targets, V, true, op, "target token");
  dispatch_float(logits.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_slice_stats_kernel<T><<<unsigned(N), kThreads, 0, stream()>>>(
        stats.f32(), logits.data<T>(), targets.i32(), int(N), int(Vs),
        int(real_columns(vocab_begin, Vs, V)), (long long)vocab_begin);
    GPT_LAUNCH_CHECK(op, "cross_entropy_slice_stats_kernel");
  });
}

void cross_entropy_slice_forward_backward(Tensor& losses, Tensor* logits, const Tensor& targets,
                                          const Tensor& stats, int64_t vocab_begin, int64_t V,
                                          float dloss) {
  const char* op = "cross_entropy_slice_forward_backward";
  check_dtype(losses, DType::F32, op, "losses");
  check_dtype(stats, DType::F32, op, "stats");
  check_dtype(targets, DType::I32, op, "targets");
  const int64_t N = targets.numel();
  check_numel(losses, N, op, "losses");
  if (N == 0) return;
  if (stats.numel() % (3 * N) != 0 || stats.numel() == 0)
    fail("cuda cross_entropy_slice_forward_backward: stats " + shape_str(stats.shape) +
         " is not [S, 3, " + std::to_string(N) + "]");
  const int64_t S = stats.numel() / (3 * N), Vs = logits ? logits->dim(-1) : 0;
  if (logits) {
    check_float(*logits, op, "logits");
    check_numel(*logits, N * Vs, op, "logits");
  }
  check_token_range(targets, V, true, op, "target token");
  const int real = int(real_columns(vocab_begin, Vs, V));
  // Without logits only the loss: one warp per row is plenty.
  const int threads = logits ? kThreads : 32;
  dispatch_float(logits ? logits->dtype : DType::F32, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_slice_forward_backward_kernel<T><<<unsigned(N), threads, 0, stream()>>>(
        losses.f32(), logits ? logits->data<T>() : nullptr, targets.i32(), stats.f32(), int(S),
        int(N), int(Vs), real, (long long)vocab_begin, (long long)V, dloss);
    GPT_LAUNCH_CHECK(op, "cross_entropy_slice_forward_backward_kernel");
  });
}

}  // namespace gpt::cuda
