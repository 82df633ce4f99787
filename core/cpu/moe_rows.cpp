// The mixture-of-experts row movement (core/ops.h, moe_*): gather the routed rows, the
// weighted combine of the experts' outputs and its backward, the scatter-add of the
// experts' input gradients. Every loop has one writer per output row and adds in choice
// order, so results are the same bits on every run and thread count. These are the
// loops core/layers/moe.cpp used to run itself, unchanged.
#include <algorithm>
#include <string>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {

void check_i32(const Tensor& t, const char* op, const char* arg) {
  if (t.dtype != DType::I32 || t.device != Device::CPU)
    fail(std::string(op) + ": argument '" + arg + "' must be an i32 CPU tensor, got " +
         dtype_name(t.dtype) + " on " + device_name(t.device));
}

// Checked before the parallel loops (an exception must not escape an OpenMP region):
// every kept row index lies inside the experts' buffer of `rows` rows.
void check_rows(const Tensor& row, int64_t n, int64_t rows, const char* op) {
  GPT_CHECK(row.numel() >= n, std::string(op) + ": row has " + std::to_string(row.numel()) +
                                  " entries, fewer than N k = " + std::to_string(n));
  const int32_t* r = row.i32();
  for (int64_t i = 0; i < n; ++i)
    if (r[i] >= rows)
      fail(std::string(op) + ": assignment " + std::to_string(i) + " names row " + std::to_string(r[i]) +
           " of an experts' buffer of " + std::to_string(rows) + " rows");
}

// N tokens of width C from [N, C] `tokens` and the experts' [rows, C] `experts`.
int64_t token_count(const Tensor& tokens, const Tensor& experts, const char* op) {
  const int64_t C = experts.dim(-1);
  GPT_CHECK(C > 0 && tokens.dim(-1) == C, std::string(op) + ": token rows " + shape_str(tokens.shape) +
                                              " and expert rows " + shape_str(experts.shape) +
                                              " differ in width");
  return tokens.numel() / C;
}

}  // namespace

void moe_gather_rows(Tensor& out, const Tensor& x, const Tensor& row_token, int64_t rows) {
  const char* op = "moe_gather_rows";
  check_f32(out, op, "out");
  check_f32(x, op, "x");
  check_i32(row_token, op, "row_token");
  const int64_t C = out.dim(-1), N = token_count(x, out, op);
  GPT_CHECK(rows >= 0 && rows * C <= out.numel() && rows <= row_token.numel(),
            std::string(op) + ": " + std::to_string(rows) + " rows do not fit out " + shape_str(out.shape) +
                " or row_token " + shape_str(row_token.shape));
  const int32_t* tok = row_token.i32();
  for (int64_t r = 0; r < rows; ++r)
    if (tok[r] < 0 || tok[r] >= N)
      fail(std::string(op) + ": row " + std::to_string(r) + " names token " + std::to_string(tok[r]) +
           " of " + std::to_string(N));
  const float* xs = x.f32();
  float* in = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::copy_n(xs + int64_t(tok[r]) * C, C, in + r * C);
}

void moe_combine(Tensor& out, const Tensor& expert_out, const Tensor& row, const Tensor& weight, int64_t k) {
  const char* op = "moe_combine";
  check_f32(out, op, "out");
  check_f32(expert_out, op, "expert_out");
  check_i32(row, op, "row");
  check_f32(weight, op, "weight");
  const int64_t C = expert_out.dim(-1), N = token_count(out, expert_out, op);
  check_rows(row, N * k, expert_out.numel() / C, op);
  GPT_CHECK(weight.numel() >= N * k, std::string(op) + ": weight " + shape_str(weight.shape) + " is shorter than N k");
  const int32_t* rw = row.i32();
  const float* wt = weight.f32();
  const float* eout = expert_out.f32();
  float* o = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t r = rw[t * k + j];
      if (r < 0) continue;
      const float w = wt[t * k + j];
      const float* y = eout + int64_t(r) * C;
      for (int64_t c = 0; c < C; ++c) o[t * C + c] += w * y[c];
    }
}

void moe_combine_backward(Tensor& d_expert_out, Tensor& dweight, const Tensor& dout, const Tensor& expert_out,
                          const Tensor& row, const Tensor& weight, int64_t k) {
  const char* op = "moe_combine_backward";
  check_f32(d_expert_out, op, "d_expert_out");
  check_f32(dweight, op, "dweight");
  check_f32(dout, op, "dout");
  check_f32(expert_out, op, "expert_out");
  check_i32(row, op, "row");
  check_f32(weight, op, "weight");
  const int64_t C = expert_out.dim(-1), N = token_count(dout, expert_out, op);
  GPT_CHECK(d_expert_out.numel() == expert_out.numel(),
            std::string(op) + ": d_expert_out " + shape_str(d_expert_out.shape) + " is not expert_out's " +
                shape_str(expert_out.shape));
  check_rows(row, N * k, expert_out.numel() / C, op);
  GPT_CHECK(weight.numel() >= N * k && dweight.numel() >= N * k,
            std::string(op) + ": weight or dweight is shorter than N k");
  const int32_t* rw = row.i32();
  const float* wt = weight.f32();
  const float* dy = dout.f32();
  const float* eout = expert_out.f32();
  float* deout = d_expert_out.f32();
  float* dw = dweight.f32();
  // d(weight[t, j]) = dout[t] . y_row, d(y_row) = weight[t, j] dout[t].
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = t * k + j;
      const int32_t r = rw[i];
      float dot = 0.f;
      if (r >= 0) {
        const float w = wt[i];
        const float* y = eout + int64_t(r) * C;
        float* d = deout + int64_t(r) * C;
        for (int64_t c = 0; c < C; ++c) {
          dot += dy[t * C + c] * y[c];
          d[c] = w * dy[t * C + c];
        }
      }
      dw[i] = dot;
    }
}

void moe_scatter_add_rows(Tensor& dx, const Tensor& d_expert_in, const Tensor& row, int64_t k) {
  const char* op = "moe_scatter_add_rows";
  check_f32(dx, op, "dx");
  check_f32(d_expert_in, op, "d_expert_in");
  check_i32(row, op, "row");
  const int64_t C = d_expert_in.dim(-1), N = token_count(dx, d_expert_in, op);
  check_rows(row, N * k, d_expert_in.numel() / C, op);
  const int32_t* rw = row.i32();
  const float* din = d_expert_in.f32();
  float* d = dx.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t r = rw[t * k + j];
      if (r < 0) continue;
      const float* g = din + int64_t(r) * C;
      for (int64_t c = 0; c < C; ++c) d[t * C + c] += g[c];
    }
}

}  // namespace gpt::cpu
