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
  const int64_t N = x.dim(0) * x.dim(1), C = x.dim(2), Vs = head.logit_columns();
  const Device dev = x.device;
  GPT_CHECK(targets.numel() == N, "targets must have the shape of the tokens [B, T]");
  GPT_CHECK(!dloss || (dx && dx->shape == x.shape), "ChunkedHeadLoss: a loss gradient needs dx shaped like x");
  const int64_t rows = chunk_rows_ > 0 ? std::min(chunk_rows_, N) : head_chunk_rows(N, Vs);
  ensure(logits_, {rows, Vs}, x.dtype, dev);
  ensure(losses_, {N}, DType::F32, dev);
  // dx is not zeroed: each chunk's backward overwrites its own rows.
  const Tensor flat_x = x.view({N, C}), flat_targets = targets.view({N});
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    const Tensor xc = flat_x.slice(r0 * C, {n, C}), tc = flat_targets.slice(r0, {n});
    Tensor logits = logits_.slice(0, {n, Vs}), losses = losses_.slice(r0, {n});
    Tensor dxc = dloss ? dx->view({N, C}).slice(r0 * C, {n, C}) : Tensor();
    head.head_loss(losses, logits, xc, tc, dloss, dloss ? &dxc : nullptr);
  }
  if (dloss) head.head_input_grad_done(*dx);
  std::vector<float> host = to_host_f32(losses_);
  double sum = 0.0;
  for (float l : host) sum += l;
  return float(sum / double(host.size()));
}

}  // namespace gpt
