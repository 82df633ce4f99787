#include "core/layers/moe.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, int64_t C, const MoeConfig& cfg,
                   float init_std, float proj_init_std)
    : cfg_(cfg), C_(C) {
  cfg_.validate();
  const int64_t E = cfg.experts, H = cfg.expert_hidden;
  router = store.add(prefix + ".router.weight", {E, C}, /*decay=*/true, init_std);
  fc = store.add(prefix + ".experts.fc", {E, H, C}, /*decay=*/true, init_std);
  fc_bias = store.add(prefix + ".experts.fc_bias", {E, H}, /*decay=*/false, 0.f);
  proj = store.add(prefix + ".experts.proj", {E, C, H}, /*decay=*/true, proj_init_std);
  proj_bias = store.add(prefix + ".experts.proj_bias", {E, C}, /*decay=*/false, 0.f);
  if (cfg.shared_experts > 0) {
    const int64_t SH = cfg.shared_experts * H;
    shared_fc = std::make_unique<Linear>(store, prefix + ".shared.fc", C, SH, true, init_std);
    shared_proj = std::make_unique<Linear>(store, prefix + ".shared.proj", SH, C, true, proj_init_std);
  }
}

int64_t MoeLayer::row_bound(int64_t N, int64_t G) const {
  const int64_t cap = cfg_.capacity(G), all = N * cfg_.top_k;
  return cap < 0 ? all : std::min(all, (N / G) * cfg_.experts * cap);
}

// Expert e's slice of a [E, ...] parameter tensor (its values or its gradient).
static Tensor expert_slice(const Tensor& t, int64_t e, Shape shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return t.slice(e * n, std::move(shape));
}

void MoeLayer::forward(MoeActs& acts, Tensor& out, const Tensor& x, int64_t T) {
  GPT_CHECK(x.dtype == DType::F32 && x.device == Device::CPU && router->compute.dtype == DType::F32,
            "MoeLayer: fp32 on the CPU only so far (bf16 and CUDA come with the model wiring)");
  const Ops& ops = ops_for(x.device);
  GPT_CHECK(x.dim(-1) == C_, "MoeLayer: input " + shape_str(x.shape) + " is not [N, " + std::to_string(C_) + "]");
  const int64_t N = x.numel() / C_, C = C_, E = cfg_.experts, k = cfg_.top_k, H = cfg_.expert_hidden;
  const int64_t G = cfg_.group_size(T);
  MoeRouting& r = acts.routing;
  ensure(r.logits, {N, E}, DType::F32, x.device);
  ops.matmul_forward(r.logits, x, router->compute, nullptr);
  moe_route(r, cfg_, G);  // checks that the tokens split into groups of G
  const int64_t rows = row_bound(N, G);

  // Sized for the bound, not this step's count: the buffers never move as loads change.
  ensure(acts.expert_in, {rows, C}, DType::F32, x.device);
  ensure(acts.expert_pre, {rows, H}, DType::F32, x.device);
  ensure(acts.expert_act, {rows, H}, DType::F32, x.device);
  ensure(acts.expert_out, {rows, C}, DType::F32, x.device);
  const float* xs = x.f32();
  float* in = acts.expert_in.f32();
  const int64_t kept = r.kept();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < kept; ++row)
    std::copy_n(xs + int64_t(r.row_token[size_t(row)]) * C, C, in + row * C);

  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = r.expert_begin[size_t(e)], n = r.expert_begin[size_t(e + 1)] - b;
    if (n == 0) continue;  // an idle expert: no GEMM on zero rows
    Tensor ein = acts.expert_in.slice(b * C, {n, C}), pre = acts.expert_pre.slice(b * H, {n, H});
    Tensor act = acts.expert_act.slice(b * H, {n, H}), eout = acts.expert_out.slice(b * C, {n, C});
    Tensor fc_b = expert_slice(fc_bias->compute, e, {H}), proj_b = expert_slice(proj_bias->compute, e, {C});
    ops.matmul_forward(pre, ein, expert_slice(fc->compute, e, {H, C}), &fc_b);
    ops.gelu_forward(act, pre);
    ops.matmul_forward(eout, act, expert_slice(proj->compute, e, {C, H}), &proj_b);
  }

  if (shared_fc) {
    const int64_t SH = shared_fc->out_features;
    ensure(acts.shared_pre, {N, SH}, DType::F32, x.device);
    ensure(acts.shared_act, {N, SH}, DType::F32, x.device);
    shared_fc->forward(acts.shared_pre, x);
    ops.gelu_forward(acts.shared_act, acts.shared_pre);
    shared_proj->forward(out, acts.shared_act);
  } else {
    zero_(out);
  }
  // Combine: each token adds its kept experts' rows in choice order (one writer per row).
  const float* eout = acts.expert_out.f32();
  float* o = out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = r.row[size_t(t * k + j)];
      if (row < 0) continue;
      const float w = r.weight[size_t(t * k + j)];
      const float* y = eout + int64_t(row) * C;
      for (int64_t c = 0; c < C; ++c) o[t * C + c] += w * y[c];
    }

  stats_.tokens_per_expert.resize(size_t(E));
  for (int64_t e = 0; e < E; ++e)
    stats_.tokens_per_expert[size_t(e)] = r.expert_begin[size_t(e + 1)] - r.expert_begin[size_t(e)];
  stats_.assignments = N * k;
  stats_.dropped = N * k - kept;
}

void MoeLayer::backward(MoeActs& acts, Tensor& dx, const Tensor& dout, const Tensor& x,
                        float aux_grad_scale, MoeScratch& s) {
  const Ops& ops = ops_for(x.device);
  const MoeRouting& r = acts.routing;
  const int64_t N = r.N, C = C_, E = cfg_.experts, k = cfg_.top_k, H = cfg_.expert_hidden;
  const int64_t rows = acts.expert_in.dim(0);
  ensure(s.d_expert_out, {rows, C}, DType::F32, x.device);
  ensure(s.d_expert_pre, {rows, H}, DType::F32, x.device);
  ensure(s.d_expert_in, {rows, C}, DType::F32, x.device);
  ensure(s.dx_part, {N, C}, DType::F32, x.device);
  s.dweight.resize(size_t(N * k));

  // Through the combine: d(weight[n, j]) = dout[n] . y_row, d(y_row) = weight[n, j] dout[n].
  const float* dy = dout.f32();
  const float* eout = acts.expert_out.f32();
  float* deout = s.d_expert_out.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const size_t i = size_t(t * k + j);
      const int32_t row = r.row[i];
      float dot = 0.f;
      if (row >= 0) {
        const float w = r.weight[i];
        const float* y = eout + int64_t(row) * C;
        float* d = deout + int64_t(row) * C;
        for (int64_t c = 0; c < C; ++c) {
          dot += dy[t * C + c] * y[c];
          d[c] = w * dy[t * C + c];
        }
      }
      s.dweight[i] = dot;
    }

  // The router: d(logits), then dx = d(logits) @ W_r (this writes dx; the rest adds to it).
  moe_route_backward(s.dlogits, r, cfg_, s.dweight, aux_grad_scale);
  ops.matmul_backward(&dx, router->grad, nullptr, s.dlogits, x, router->compute);

  if (shared_fc) {
    ensure(s.d_shared_pre, acts.shared_pre.shape, DType::F32, x.device);
    shared_proj->backward_through_gelu(s.d_shared_pre, dout, acts.shared_act, acts.shared_pre);
    shared_fc->backward(&s.dx_part, s.d_shared_pre, x);
    ops.accumulate(dx, s.dx_part);
  }

  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = r.expert_begin[size_t(e)], n = r.expert_begin[size_t(e + 1)] - b;
    if (n == 0) continue;
    Tensor dpre = s.d_expert_pre.slice(b * H, {n, H}), din = s.d_expert_in.slice(b * C, {n, C});
    Tensor dproj_b = expert_slice(proj_bias->grad, e, {C}), dfc_b = expert_slice(fc_bias->grad, e, {H});
    Tensor dproj = expert_slice(proj->grad, e, {C, H}), dfc = expert_slice(fc->grad, e, {H, C});
    ops.matmul_gelu_backward(dpre, dproj, &dproj_b, s.d_expert_out.slice(b * C, {n, C}),
                             acts.expert_act.slice(b * H, {n, H}), expert_slice(proj->compute, e, {C, H}),
                             acts.expert_pre.slice(b * H, {n, H}));
    ops.matmul_backward(&din, dfc, &dfc_b, dpre, acts.expert_in.slice(b * C, {n, C}),
                        expert_slice(fc->compute, e, {H, C}));
  }
  // Scatter the experts' input gradients back, each token adding its rows in choice order.
  const float* din = s.d_expert_in.f32();
  float* d = dx.f32();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < N; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = r.row[size_t(t * k + j)];
      if (row < 0) continue;
      const float* g = din + int64_t(row) * C;
      for (int64_t c = 0; c < C; ++c) d[t * C + c] += g[c];
    }
}

}  // namespace gpt
