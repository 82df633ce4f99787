// The mixture-of-experts row movement (core/ops.h, moe_*), f32: gather the routed rows,
// the weighted combine of the experts' outputs and its backward, the scatter-add of the
// experts' input gradients. Memory-bound; the CPU backend (core/cpu/moe_rows.cpp) is the
// reference.
//
// Deterministic without atomics: the combine and the scatter-add run one thread per
// (token, channel), adding the token's choices in choice order; in the combine's
// backward each kept row belongs to exactly one assignment, so its d(expert_out) row has
// one writer, and each assignment's d(weight) is one warp's dot product summed in a
// fixed tree (warp_sum).
//
// The row indices come from the host's router, already checked there; the kernels still
// bound every index they read (an index outside the buffer counts as dropped / a zero
// row), so a bad index can never make them touch memory outside their tensors.

#include <string>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kMoeThreads = 256;
}  // namespace

// ---- kernels ----

// out[r, c] = x[row_token[r], c] for r < rows (N tokens in x).
__global__ void moe_gather_rows_kernel(float* out, const float* x, const int32_t* row_token,
                                       size_t n, int C, unsigned N) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / size_t(C), c = i % size_t(C);
    const unsigned tok = unsigned(row_token[r]);  // a negative index wraps to >= N
    out[i] = tok < N ? x[size_t(tok) * C + c] : 0.f;
  }
}

// out[t, c] += weight[t k + j] * expert_out[row[t k + j], c], j in order, kept rows only
// (row in [0, R)).
__global__ void moe_combine_kernel(float* out, const float* expert_out, const int32_t* row,
                                   const float* weight, size_t n, int C, int k, unsigned R) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / size_t(C), c = i % size_t(C);
    float acc = out[i];
    for (int j = 0; j < k; ++j) {
      const unsigned r = unsigned(row[t * k + j]);  // dropped (-1) wraps to >= R
      if (r < R) acc += weight[t * k + j] * expert_out[size_t(r) * C + c];
    }
    out[i] = acc;
  }
}

// One warp per assignment a = t k + j (grid-stride over warps, so the branch on the
// assignment is warp-uniform and every lane reaches the shuffle):
// d_expert_out[row, c] = weight[a] dout[t, c]; dweight[a] = sum_c dout[t, c]
// expert_out[row, c], 0 when dropped.
__global__ void moe_combine_backward_kernel(float* d_expert_out, float* dweight, const float* dout,
                                            const float* expert_out, const int32_t* row,
                                            const float* weight, size_t assignments, int C, int k,
                                            unsigned R) {
  const int lane = int(threadIdx.x % 32);
  const size_t warps = size_t(gridDim.x) * (blockDim.x / 32);
  for (size_t a = (blockIdx.x * size_t(blockDim.x) + threadIdx.x) / 32; a < assignments; a += warps) {
    const size_t t = a / size_t(k);
    const unsigned r = unsigned(row[a]);
    float dot = 0.f;
    if (r < R) {
      const float w = weight[a];
      const float* dy = dout + t * C;
      const float* y = expert_out + size_t(r) * C;
      float* d = d_expert_out + size_t(r) * C;
      for (int c = lane; c < C; c += 32) {
        dot += dy[c] * y[c];
        d[c] = w * dy[c];
      }
    }
    dot = warp_sum(dot);
    if (lane == 0) dweight[a] = dot;
  }
}

// dx[t, c] += d_expert_in[row[t k + j], c], j in order, kept rows only.
__global__ void moe_scatter_add_rows_kernel(float* dx, const float* d_expert_in, const int32_t* row,
                                            size_t n, int C, int k, unsigned R) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / size_t(C), c = i % size_t(C);
    float acc = dx[i];
    for (int j = 0; j < k; ++j) {
      const unsigned r = unsigned(row[t * k + j]);
      if (r < R) acc += d_expert_in[size_t(r) * C + c];
    }
    dx[i] = acc;
  }
}

// ---- launchers ----

namespace {

void check_f32_cuda(const Tensor& t, const char* op, const char* arg) {
  check_cuda(t, op, arg);
  check_dtype(t, DType::F32, op, arg);
}

// Tokens in the [N, C] tensor `tokens`, C the width of the experts' rows.
int64_t moe_tokens(const Tensor& tokens, const Tensor& experts, const char* op) {
  const int64_t C = experts.dim(-1);
  if (C <= 0 || tokens.dim(-1) != C)
    fail(std::string("cuda ") + op + ": token rows " + shape_str(tokens.shape) + " and expert rows " +
         shape_str(experts.shape) + " differ in width");
  return tokens.numel() / C;
}

void check_assignments(const Tensor& t, int64_t n, const char* op, const char* arg) {
  if (t.numel() < n)
    fail(std::string("cuda ") + op + ": " + arg + " " + shape_str(t.shape) + " has fewer than N k = " +
         std::to_string(n) + " entries");
}

}  // namespace

void moe_gather_rows(Tensor& out, const Tensor& x, const Tensor& row_token, int64_t rows) {
  const char* op = "moe_gather_rows";
  check_f32_cuda(out, op, "out");
  check_f32_cuda(x, op, "x");
  check_cuda(row_token, op, "row_token");
  check_dtype(row_token, DType::I32, op, "row_token");
  const int64_t C = out.dim(-1), N = moe_tokens(x, out, op);
  if (rows < 0 || rows * C > out.numel() || rows > row_token.numel())
    fail(std::string("cuda ") + op + ": " + std::to_string(rows) + " rows do not fit out " +
         shape_str(out.shape) + " or row_token " + shape_str(row_token.shape));
  const size_t n = size_t(rows) * size_t(C);
  if (n == 0) return;
  moe_gather_rows_kernel<<<grid_for(n, kMoeThreads), kMoeThreads, 0, stream()>>>(
      out.f32(), x.f32(), row_token.i32(), n, int(C), unsigned(N));
  GPT_LAUNCH_CHECK(op, "moe_gather_rows_kernel");
}

void moe_combine(Tensor& out, const Tensor& expert_out, const Tensor& row, const Tensor& weight, int64_t k) {
  const char* op = "moe_combine";
  check_f32_cuda(out, op, "out");
  check_f32_cuda(expert_out, op, "expert_out");
  check_cuda(row, op, "row");
  check_dtype(row, DType::I32, op, "row");
  check_f32_cuda(weight, op, "weight");
  const int64_t C = expert_out.dim(-1), N = moe_tokens(out, expert_out, op);
  check_assignments(row, N * k, op, "row");
  check_assignments(weight, N * k, op, "weight");
  const size_t n = size_t(N) * size_t(C);
  if (n == 0 || k == 0) return;
  moe_combine_kernel<<<grid_for(n, kMoeThreads), kMoeThreads, 0, stream()>>>(
      out.f32(), expert_out.f32(), row.i32(), weight.f32(), n, int(C), int(k),
      unsigned(expert_out.numel() / C));
  GPT_LAUNCH_CHECK(op, "moe_combine_kernel");
}

void moe_combine_backward(Tensor& d_expert_out, Tensor& dweight, const Tensor& dout, const Tensor& expert_out,
                          const Tensor& row, const Tensor& weight, int64_t k) {
  const char* op = "moe_combine_backward";
  check_f32_cuda(d_expert_out, op, "d_expert_out");
  check_f32_cuda(dweight, op, "dweight");
  check_f32_cuda(dout, op, "dout");
  check_f32_cuda(expert_out, op, "expert_out");
  check_cuda(row, op, "row");
  check_dtype(row, DType::I32, op, "row");
  check_f32_cuda(weight, op, "weight");
  const int64_t C = expert_out.dim(-1), N = moe_tokens(dout, expert_out, op);
  check_numel(d_expert_out, expert_out.numel(), op, "d_expert_out");
  check_assignments(row, N * k, op, "row");
  check_assignments(weight, N * k, op, "weight");
  check_assignments(dweight, N * k, op, "dweight");
  const size_t assignments = size_t(N) * size_t(k);
  if (assignments == 0) return;
  constexpr int kWarps = kMoeThreads / 32;
  moe_combine_backward_kernel<<<grid_for(assignments, kWarps), kMoeThreads, 0, stream()>>>(
      d_expert_out.f32(), dweight.f32(), dout.f32(), expert_out.f32(), row.i32(), weight.f32(),
      assignments, int(C), int(k), unsigned(expert_out.numel() / C));
  GPT_LAUNCH_CHECK(op, "moe_combine_backward_kernel");
}

void moe_scatter_add_rows(Tensor& dx, const Tensor& d_expert_in, const Tensor& row, int64_t k) {
  const char* op = "moe_scatter_add_rows";
  check_f32_cuda(dx, op, "dx");
  check_f32_cuda(d_expert_in, op, "d_expert_in");
  check_cuda(row, op, "row");
  check_dtype(row, DType::I32, op, "row");
  const int64_t C = d_expert_in.dim(-1), N = moe_tokens(dx, d_expert_in, op);
  check_assignments(row, N * k, op, "row");
  const size_t n = size_t(N) * size_t(C);
  if (n == 0 || k == 0) return;
  moe_scatter_add_rows_kernel<<<grid_for(n, kMoeThreads), kMoeThreads, 0, stream()>>>(
      dx.f32(), d_expert_in.f32(), row.i32(), n, int(C), int(k), unsigned(d_expert_in.numel() / C));
  GPT_LAUNCH_CHECK(op, "moe_scatter_add_rows_kernel");
}

}  // namespace gpt::cuda
