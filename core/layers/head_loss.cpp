#include "core/layers/head_loss.h"

#include <algorithm>

#include "core/error.h"

namespace gpt {

int64_t head_chunk_rows(int64_t N, int64_t columns) {
  const int64_t cap = (int64_t(1) << 27) / (columns > 0 ? columns : 1);
  return std::max<int64_t>(1, std::min(N, cap));
}

float ChunkedHeadLoss::run(TokenEmbedding& head, const Tensor& x, const Tensor& targets, const float* dloss,
                           Tensor* dx) {
  // Vs: the logit columns this head makes, the whole vocabulary or (under TP) a slice.
  // The head runs over all N rows, also when x is only this rank's sequence shard.
  const int64_t N = targets.numel(), C = x.dim(-1), Vs = head.logit_columns();
  const Device dev = x.device;
  GPT_CHECK(!dloss || (dx && dx->shape == x.shape), "ChunkedHeadLoss: a loss gradient needs dx shaped like x");
  const Tensor x_all = head.head_input(x, N);
  GPT_CHECK(x_all.numel() == N * C, "targets must have the shape of the tokens [B, T]");
  const int64_t rows = chunk_rows_ > 0 ? std::min(chunk_rows_, N) : head_chunk_rows(N, Vs);
  ensure(logits_, {rows, Vs}, x.dtype, dev);
  ensure(losses_, {N}, DType::F32, dev);
  // Not zeroed: each chunk's backward overwrites its own rows of d(x).
  const Tensor dx_all = dloss ? head.head_input_grad(*dx, N) : Tensor();
  const Tensor flat_x = x_all.view({N, C}), flat_targets = targets.view({N});
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    const Tensor xc = flat_x.slice(r0 * C, {n, C}), tc = flat_targets.slice(r0, {n});
    Tensor logits = logits_.slice(0, {n, Vs}), losses = losses_.slice(r0, {n});
    Tensor dxc = dloss ? dx_all.view({N, C}).slice(r0 * C, {n, C}) : Tensor();
    head.head_loss(losses, logits, xc, tc, dloss, dloss ? &dxc : nullptr);
  }
  if (dloss) head.head_input_grad_done(*dx, N);
  std::vector<float> host = to_host_f32(losses_);
  double sum = 0.0;
  for (float l : host) sum += l;
  // Each row's mean of targets [B, T] (a flat [N] is one row), from the same losses: the
  // token-weighted mean of the row means is the returned mean before its float rounding.
  const int64_t rows_B = targets.ndim() == 2 ? targets.dim(0) : 1, row_T = N / rows_B;
  row_losses_.assign(size_t(rows_B), 0.0);
  for (int64_t r = 0; r < rows_B; ++r) {
    double row = 0.0;
    for (int64_t t = 0; t < row_T; ++t) row += host[size_t(r * row_T + t)];
    row_losses_[size_t(r)] = row / double(row_T);
  }
  return float(sum / double(host.size()));
}

}  // namespace gpt
