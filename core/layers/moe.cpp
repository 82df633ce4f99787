#include "core/layers/moe.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, int64_t C, const MoeConfig& cfg,
                   float init_std, float proj_init_std, ExpertExchange* exchange)
    : cfg_(cfg), C_(C), exchange_(exchange && exchange->size() > 1 ? exchange : nullptr) {
  cfg_.validate();
  const int64_t E = cfg.experts, H = cfg.expert_hidden;
  const int P = exchange_ ? exchange_->size() : 1, me = exchange_ ? exchange_->rank() : 0;
  GPT_CHECK(E % P == 0, "moe.experts = " + std::to_string(E) + " does not split over parallel.ep = " +
                            std::to_string(P) + " expert-parallel ranks");
  local_ = E / P, first_ = int64_t(me) * local_;
  const ShardSpec mine(0, P, me);  // experts [first_, first_ + local_) along dim 0
  router = store.add(prefix + ".router.weight", {E, C}, /*decay=*/true, init_std);
  fc = store.add_expert(prefix + ".experts.fc", {E, H, C}, /*decay=*/true, init_std, 0.f, mine);
  fc_bias = store.add_expert(prefix + ".experts.fc_bias", {E, H}, /*decay=*/false, 0.f, 0.f, mine);
  proj = store.add_expert(prefix + ".experts.proj", {E, C, H}, /*decay=*/true, proj_init_std, 0.f, mine);
  proj_bias = store.add_expert(prefix + ".experts.proj_bias", {E, C}, /*decay=*/false, 0.f, 0.f, mine);
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

// A token sends at most min(k, local) of its choices to one rank's experts, and an expert
// takes at most min(cap, G) of a group's tokens; every rank's micro-batch has N tokens.
int64_t MoeLayer::received_row_bound(int64_t N, int64_t G) const {
  const int64_t cap = cfg_.capacity(G), P = exchange_ ? exchange_->size() : 1;
  int64_t per_source = N * std::min(cfg_.top_k, local_);
  if (cap >= 0) per_source = std::min(per_source, (N / G) * local_ * std::min(cap, G));
  return P * per_source;
}

// Expert e's slice of a [E, ...] parameter tensor (its values or its gradient).
static Tensor expert_slice(const Tensor& t, int64_t e, Shape shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return t.slice(e * n, std::move(shape));
}

// Rows received from P ranks for L local experts arrive source-major (rank j's rows for
// expert 0, for expert 1, ..., then rank j + 1's); the experts want them expert-major
// (expert e's rows from rank 0, rank 1, ...). counts[j L + e] rows per block, each block
// one contiguous copy on the rows' device.
static void reorder_rows(const Tensor& src, Tensor& dst, const std::vector<int64_t>& counts, int64_t P, int64_t L,
                         int64_t width, bool to_expert_major) {
  std::vector<int64_t> source_major(size_t(P * L)), expert_major(size_t(P * L));
  int64_t at = 0;
  for (int64_t j = 0; j < P; ++j)
    for (int64_t e = 0; e < L; ++e) source_major[size_t(j * L + e)] = at, at += counts[size_t(j * L + e)];
  at = 0;
  for (int64_t e = 0; e < L; ++e)
    for (int64_t j = 0; j < P; ++j) expert_major[size_t(j * L + e)] = at, at += counts[size_t(j * L + e)];
  const Ops& ops = ops_for(src.device);
  const float* s = src.f32();
  float* d = dst.f32();
  for (int64_t b = 0; b < P * L; ++b) {
    const int64_t from = to_expert_major ? source_major[size_t(b)] : expert_major[size_t(b)];
    const int64_t to = to_expert_major ? expert_major[size_t(b)] : source_major[size_t(b)];
    const int64_t n = counts[size_t(b)] * width;
    if (n > 0) ops.copy_device(d + to * width, s + from * width, size_t(n) * sizeof(float));
  }
}

void MoeLayer::dispatch(MoeActs& acts, const Tensor& local, Tensor& run_rows, Tensor& staging) {
  // The router numbered rows expert by expert, so each rank's experts' rows are already
  // one contiguous block, in rank order: they go as they are.
  exchange_->exchange_rows(local, acts.send_rows, staging, acts.recv_rows, C_);
  reorder_rows(staging, run_rows, acts.recv_counts, exchange_->size(), local_, C_, /*to_expert_major=*/true);
}

void MoeLayer::combine_back(MoeActs& acts, const Tensor& run_rows, Tensor& local, Tensor& staging) {
  reorder_rows(run_rows, staging, acts.recv_counts, exchange_->size(), local_, C_, /*to_expert_major=*/false);
  exchange_->exchange_rows(staging, acts.recv_rows, local, acts.send_rows, C_);
}

void MoeLayer::run_experts(ExpertRows& run) {
  const Ops& ops = ops_for(run.in.device);
  const int64_t C = C_, H = cfg_.expert_hidden;
  for (int64_t e = 0; e < local_; ++e) {
    const int64_t b = run.begin[size_t(e)], n = run.begin[size_t(e + 1)] - b;
    if (n == 0) continue;  // an idle expert: no GEMM on zero rows
    Tensor ein = run.in.slice(b * C, {n, C}), pre = run.pre.slice(b * H, {n, H});
    Tensor act = run.act.slice(b * H, {n, H}), eout = run.out.slice(b * C, {n, C});
    Tensor fc_b = expert_slice(fc_bias->compute, e, {H}), proj_b = expert_slice(proj_bias->compute, e, {C});
    ops.matmul_forward(pre, ein, expert_slice(fc->compute, e, {H, C}), &fc_b);
    ops.gelu_forward(act, pre);
    ops.matmul_forward(eout, act, expert_slice(proj->compute, e, {C, H}), &proj_b);
  }
}

void MoeLayer::run_experts_backward(const ExpertRows& run, const Tensor& d_out, Tensor& d_pre, Tensor& d_in) {
  const Ops& ops = ops_for(run.in.device);
  const int64_t C = C_, H = cfg_.expert_hidden;
  for (int64_t e = 0; e < local_; ++e) {
    const int64_t b = run.begin[size_t(e)], n = run.begin[size_t(e + 1)] - b;
    if (n == 0) continue;
    Tensor dpre = d_pre.slice(b * H, {n, H}), din = d_in.slice(b * C, {n, C});
    Tensor dproj_b = expert_slice(proj_bias->grad, e, {C}), dfc_b = expert_slice(fc_bias->grad, e, {H});
    Tensor dproj = expert_slice(proj->grad, e, {C, H}), dfc = expert_slice(fc->grad, e, {H, C});
    ops.matmul_gelu_backward(dpre, dproj, &dproj_b, d_out.slice(b * C, {n, C}), run.act.slice(b * H, {n, H}),
                             expert_slice(proj->compute, e, {C, H}), run.pre.slice(b * H, {n, H}));
    ops.matmul_backward(&din, dfc, &dfc_b, dpre, run.in.slice(b * C, {n, C}), expert_slice(fc->compute, e, {H, C}));
  }
}

void MoeLayer::forward(MoeActs& acts, Tensor& out, const Tensor& x, int64_t T) {
  GPT_CHECK(x.dtype == DType::F32 && router->compute.dtype == DType::F32,
            "MoeLayer: fp32 only so far (bf16 comes with the model wiring)");
  const Ops& ops = ops_for(x.device);
  GPT_CHECK(x.dim(-1) == C_, "MoeLayer: input " + shape_str(x.shape) + " is not [N, " + std::to_string(C_) + "]");
  const int64_t N = x.numel() / C_, C = C_, E = cfg_.experts, k = cfg_.top_k, H = cfg_.expert_hidden;
  const int64_t G = cfg_.group_size(T);
  MoeRouting& r = acts.routing;
  ensure(r.logits, {N, E}, DType::F32, Device::CPU);
  if (x.device == Device::CPU) {
    ops.matmul_forward(r.logits, x, router->compute, nullptr);
  } else {
    // The routing is sequential and tiny (N x E): it runs on the host, from the logits.
    ensure(acts.device_logits, {N, E}, DType::F32, x.device);
    ops.matmul_forward(acts.device_logits, x, router->compute, nullptr);
    copy_(r.logits, acts.device_logits);
  }
  moe_route(r, cfg_, G);  // checks that the tokens split into groups of G
  const int64_t rows = row_bound(N, G);
  const int64_t kept = r.kept();

  // The indices the row ops read, on the activations' device (a copy on the CPU too: one
  // code path, and the copy is N k words).
  ensure(acts.row_token, {rows}, DType::I32, x.device);
  ensure(acts.row, {N * k}, DType::I32, x.device);
  ensure(acts.weight, {N * k}, DType::F32, x.device);
  if (kept > 0) ops.copy_from_host(acts.row_token.raw(), r.row_token.data(), size_t(kept) * sizeof(int32_t));
  ops.copy_from_host(acts.row.raw(), r.row.data(), size_t(N * k) * sizeof(int32_t));
  ops.copy_from_host(acts.weight.raw(), r.weight.data(), size_t(N * k) * sizeof(float));

  // Sized for the bound, not this step's count: the buffers never move as loads change.
  ensure(acts.expert_in, {rows, C}, DType::F32, x.device);
  ensure(acts.expert_out, {rows, C}, DType::F32, x.device);
  ops.moe_gather_rows(acts.expert_in, x, acts.row_token, kept);

  ExpertRows& run = acts.run;
  if (!exchange_) {
    run.in = acts.expert_in, run.out = acts.expert_out;
    run.begin = r.expert_begin;
    ensure(run.pre, {rows, H}, DType::F32, x.device);
    ensure(run.act, {rows, H}, DType::F32, x.device);
    run_experts(run);
  } else {
    const int64_t P = exchange_->size(), L = local_, received = received_row_bound(N, G);
    ensure(run.in, {received, C}, DType::F32, x.device);
    ensure(run.pre, {received, H}, DType::F32, x.device);
    ensure(run.act, {received, H}, DType::F32, x.device);
    ensure(run.out, {received, C}, DType::F32, x.device);
    ensure(staging_, {std::max(rows, received), C}, DType::F32, x.device);
    std::vector<int64_t> counts(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) counts[size_t(e)] = r.expert_begin[size_t(e + 1)] - r.expert_begin[size_t(e)];
    acts.recv_counts = exchange_->exchange_counts(counts, L);
    acts.send_rows.assign(size_t(P), 0), acts.recv_rows.assign(size_t(P), 0);
    run.begin.assign(size_t(L + 1), 0);
    for (int64_t j = 0; j < P; ++j)
      for (int64_t e = 0; e < L; ++e) {
        acts.send_rows[size_t(j)] += counts[size_t(j * L + e)];
        acts.recv_rows[size_t(j)] += acts.recv_counts[size_t(j * L + e)];
        run.begin[size_t(e + 1)] += acts.recv_counts[size_t(j * L + e)];
      }
    for (int64_t e = 0; e < L; ++e) run.begin[size_t(e + 1)] += run.begin[size_t(e)];
    GPT_CHECK(run.begin.back() <= received, "MoeLayer: more rows arrived than the bound allows");
    dispatch(acts, acts.expert_in, run.in, staging_);
    run_experts(run);
    combine_back(acts, run.out, acts.expert_out, staging_);
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
  ops.moe_combine(out, acts.expert_out, acts.row, acts.weight, k);

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
  const int64_t N = r.N, C = C_, k = cfg_.top_k, H = cfg_.expert_hidden;
  const int64_t rows = acts.expert_in.dim(0);
  ensure(s.d_expert_out, {rows, C}, DType::F32, x.device);
  ensure(s.d_expert_in, {rows, C}, DType::F32, x.device);
  ensure(s.dx_part, {N, C}, DType::F32, x.device);
  ensure(s.dweight_rows, {N * k}, DType::F32, x.device);
  s.dweight.resize(size_t(N * k));

  // Through the combine: d(weight[n, j]) = dout[n] . y_row, d(y_row) = weight[n, j] dout[n].
  ops.moe_combine_backward(s.d_expert_out, s.dweight_rows, dout, acts.expert_out, acts.row, acts.weight, k);
  // The router's backward runs on the host, as its forward did.
  ops.copy_to_host(s.dweight.data(), s.dweight_rows.raw(), size_t(N * k) * sizeof(float));

  // The router: d(logits), then dx = d(logits) @ W_r (this writes dx; the rest adds to it).
  moe_route_backward(s.dlogits, r, cfg_, s.dweight, aux_grad_scale);
  if (x.device == Device::CPU) {
    ops.matmul_backward(&dx, router->grad, nullptr, s.dlogits, x, router->compute);
  } else {
    ensure(s.device_dlogits, s.dlogits.shape, DType::F32, x.device);
    copy_(s.device_dlogits, s.dlogits);
    ops.matmul_backward(&dx, router->grad, nullptr, s.device_dlogits, x, router->compute);
  }

  if (shared_fc) {
    ensure(s.d_shared_pre, acts.shared_pre.shape, DType::F32, x.device);
    shared_proj->backward_through_gelu(s.d_shared_pre, dout, acts.shared_act, acts.shared_pre);
    shared_fc->backward(&s.dx_part, s.d_shared_pre, x);
    ops.accumulate(dx, s.dx_part);
  }

  // The experts, on the rows they ran: this rank's own, or (expert parallelism) every
  // rank's rows for this rank's experts, whose output gradients travel there first.
  const ExpertRows& run = acts.run;
  const int64_t run_rows = run.in.dim(0);
  ensure(s.d_run_pre, {run_rows, H}, DType::F32, x.device);
  if (!exchange_) {
    run_experts_backward(run, s.d_expert_out, s.d_run_pre, s.d_expert_in);
  } else {
    ensure(s.d_run_out, {run_rows, C}, DType::F32, x.device);
    ensure(s.d_run_in, {run_rows, C}, DType::F32, x.device);
    ensure(s.staging, {std::max(rows, run_rows), C}, DType::F32, x.device);
    dispatch(acts, s.d_expert_out, s.d_run_out, s.staging);
    run_experts_backward(run, s.d_run_out, s.d_run_pre, s.d_run_in);
    combine_back(acts, s.d_run_in, s.d_expert_in, s.staging);
  }
  // Scatter the experts' input gradients back, each token adding its rows in choice order.
  ops.moe_scatter_add_rows(dx, s.d_expert_in, acts.row, k);
}

}  // namespace gpt
