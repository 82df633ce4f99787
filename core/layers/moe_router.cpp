#include "core/layers/moe_router.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gpt {

void MoeConfig::validate() const {
  GPT_CHECK(experts >= 1, "moe.experts must be at least 1 for a mixture-of-experts layer, got " +
                              std::to_string(experts));
  GPT_CHECK(top_k >= 1 && top_k <= experts,
            "moe.top_k must be in [1, moe.experts = " + std::to_string(experts) + "], got " +
                std::to_string(top_k));
  GPT_CHECK(expert_hidden >= 1, "moe.expert_hidden must be positive, got " + std::to_string(expert_hidden));
  GPT_CHECK(shared_experts >= 0, "moe.shared_experts must not be negative, got " +
                                     std::to_string(shared_experts));
  GPT_CHECK(capacity_factor >= 0.f, "moe.capacity_factor must not be negative (0 is dropless), got " +
                                        std::to_string(capacity_factor));
  GPT_CHECK(group_tokens >= 0, "moe.group_tokens must not be negative (0 is one sequence), got " +
                                   std::to_string(group_tokens));
  GPT_CHECK(aux_loss >= 0.f, "moe.aux_loss must not be negative, got " + std::to_string(aux_loss));
  GPT_CHECK(z_loss >= 0.f, "moe.z_loss must not be negative, got " + std::to_string(z_loss));
}

int64_t MoeConfig::capacity(int64_t G) const {
  if (capacity_factor <= 0.f) return -1;
  // In double: cf * G * k / E is exact for the factors anyone writes (1, 1.25, 2) and the
  // same on every rank, so every layout drops the same assignments.
  return int64_t(std::ceil(double(capacity_factor) * double(G * top_k) / double(experts)));
}

// Softmax, logsumexp and top-k of one token's logits (steps 1 and 2).
static void route_token(const float* logit, float* prob, float& lse, int32_t* chosen, float* weight,
                        int64_t E, int64_t k, bool renormalize) {
  float m = logit[0];
  for (int64_t e = 1; e < E; ++e) m = std::max(m, logit[e]);
  float sum = 0.f;
  for (int64_t e = 0; e < E; ++e) sum += (prob[e] = std::exp(logit[e] - m));
  for (int64_t e = 0; e < E; ++e) prob[e] /= sum;
  lse = m + std::log(sum);
  float chosen_sum = 0.f;
  for (int64_t j = 0; j < k; ++j) {
    int32_t best = -1;
    for (int64_t e = 0; e < E; ++e) {
      bool taken = false;
      for (int64_t i = 0; i < j; ++i) taken = taken || chosen[i] == e;
      // Strictly greater: on a tie the lower index, seen first, stays.
      if (!taken && (best < 0 || prob[e] > prob[best])) best = int32_t(e);
    }
    chosen[j] = best;
    weight[j] = prob[best];
    chosen_sum += prob[best];
  }
  if (renormalize)
    for (int64_t j = 0; j < k; ++j) weight[j] /= chosen_sum;
}

void moe_route(MoeRouting& r, const MoeConfig& cfg, int64_t G) {
  const int64_t N = r.logits.dim(0), E = cfg.experts, k = cfg.top_k;
  GPT_CHECK(r.logits.dim(1) == E && r.logits.dtype == DType::F32 && r.logits.device == Device::CPU,
            "moe_route: logits must be F32 [N, E] in host memory");
  GPT_CHECK(G >= 1 && N % G == 0, "moe: " + std::to_string(N) + " tokens do not split into groups of " +
                                      std::to_string(G) + " (moe.group_tokens)");
  const int64_t groups = N / G, cap = cfg.capacity(G);
  r.N = N;
  r.G = G;
  ensure(r.probs, {N, E}, DType::F32, Device::CPU);
  r.lse.resize(size_t(N));
  r.expert.resize(size_t(N * k));
  r.weight.resize(size_t(N * k));
  r.row.resize(size_t(N * k));
  const float* logits = r.logits.f32();
  float* probs = r.probs.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    route_token(logits + n * E, probs + n * E, r.lse[size_t(n)], &r.expert[size_t(n * k)],
                &r.weight[size_t(n * k)], E, k, cfg.renormalize);

  // Capacity (step 3): mark kept assignments with row 0 for now, dropped with -1.
  std::vector<int64_t> used(static_cast<size_t>(E));
  for (int64_t g = 0; g < groups; ++g) {
    std::fill(used.begin(), used.end(), 0);
    for (int64_t j = 0; j < k; ++j)
      for (int64_t n = g * G; n < (g + 1) * G; ++n) {
        const size_t i = size_t(n * k + j);
        int64_t& u = used[size_t(r.expert[i])];
        r.row[i] = (cap < 0 || u < cap) ? 0 : -1;
        u += (r.row[i] == 0);
      }
  }
  // Rows (step 4): count kept assignments per expert, then number them in token order.
  r.expert_begin.assign(size_t(E + 1), 0);
  for (int64_t i = 0; i < N * k; ++i)
    if (r.row[size_t(i)] == 0) ++r.expert_begin[size_t(r.expert[size_t(i)]) + 1];
  for (int64_t e = 0; e < E; ++e) r.expert_begin[size_t(e + 1)] += r.expert_begin[size_t(e)];
  std::vector<int64_t> next(r.expert_begin.begin(), r.expert_begin.end() - 1);
  r.row_token.resize(size_t(r.kept()));
  for (int64_t i = 0; i < N * k; ++i) {
    if (r.row[size_t(i)] < 0) continue;
    const int64_t row = next[size_t(r.expert[size_t(i)])]++;
    r.row[size_t(i)] = int32_t(row);
    r.row_token[size_t(row)] = int32_t(i / k);
  }

  // Auxiliary losses (step 5), summed in double in a fixed order.
  r.load_fraction.assign(size_t(groups * E), 0.f);
  double balance = 0.0;
  for (int64_t g = 0; g < groups; ++g) {
    float* f = &r.load_fraction[size_t(g * E)];
    for (int64_t i = g * G * k; i < (g + 1) * G * k; ++i) f[r.expert[size_t(i)]] += 1.f;
    for (int64_t e = 0; e < E; ++e) {
      f[e] /= float(G * k);
      double p_mean = 0.0;
      for (int64_t n = g * G; n < (g + 1) * G; ++n) p_mean += probs[n * E + e];
      balance += double(E) * double(f[e]) * (p_mean / double(G));
    }
  }
  double z = 0.0;
  for (int64_t n = 0; n < N; ++n) z += double(r.lse[size_t(n)]) * double(r.lse[size_t(n)]);
  r.load_balance = balance / double(groups);
  r.router_z = z / double(N);
  r.aux_loss = float(double(cfg.aux_loss) * r.load_balance);
  r.z_loss = float(double(cfg.z_loss) * r.router_z);
}

void moe_route_backward(Tensor& dlogits, const MoeRouting& r, const MoeConfig& cfg,
                        const std::vector<float>& dweight, float aux_grad_scale) {
  const int64_t N = r.N, G = r.G, E = cfg.experts, k = cfg.top_k, groups = N / G;
  ensure(dlogits, {N, E}, DType::F32, Device::CPU);
  const float* probs = r.probs.f32();
  float* dl = dlogits.f32();
  // d(load balance)/d(prob[n, e]) = aux_loss E f_{g(n), e} / (G groups); d(z)/d(logit[n, e])
  // = z_loss 2 lse[n] prob[n, e] / N.
  const float balance_scale = aux_grad_scale * cfg.aux_loss * float(E) / float(G * groups);
  const float z_scale = aux_grad_scale * cfg.z_loss * 2.f / float(N);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* p = probs + n * E;
    float* d = dl + n * E;  // d(prob) first, turned into d(logit) in place below
    const float* f = &r.load_fraction[size_t((n / G) * E)];
    for (int64_t e = 0; e < E; ++e) d[e] = balance_scale * f[e];
    const int32_t* chosen = &r.expert[size_t(n * k)];
    const float* dw = &dweight[size_t(n * k)];
    if (cfg.renormalize) {
      // w_j = p_j / s with s the sum of the chosen p: dp_j = (dw_j - sum_i dw_i w_i) / s.
      float s = 0.f, dot = 0.f;
      for (int64_t j = 0; j < k; ++j) {
        s += p[chosen[j]];
        dot += dw[j] * r.weight[size_t(n * k + j)];
      }
      for (int64_t j = 0; j < k; ++j) d[chosen[j]] += (dw[j] - dot) / s;
    } else {
      for (int64_t j = 0; j < k; ++j) d[chosen[j]] += dw[j];
    }
    float dot = 0.f;
    for (int64_t e = 0; e < E; ++e) dot += p[e] * d[e];
    const float z = z_scale * r.lse[size_t(n)];
    for (int64_t e = 0; e < E; ++e) d[e] = p[e] * (d[e] - dot) + z * p[e];
  }
}

}  // namespace gpt
