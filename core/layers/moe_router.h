// The mixture-of-experts router (core/layers/moe.h runs the experts): from router logits
// to which experts each token goes to, with what weight, which assignments capacity
// drops, and the two auxiliary losses. Everything here is fp32 and runs as plain loops
// on host memory; the experts' GEMMs are what costs, and they go through the ops table.
//
// Dimension letters: N tokens (B*T rows, flattened), C channels, E experts, k the experts
// each token is routed to (top_k), H one expert's hidden width, G tokens per group.
//
// The routing of one forward, in order:
//  1. probs = softmax(logits) over E, lse = logsumexp(logits) per token;
//  2. top-k of probs, best first, a tie going to the lower expert index; the combine
//     weights are the chosen probs, divided by their sum when `renormalize`;
//  3. capacity: tokens are taken in groups of G consecutive rows (one sequence by default,
//     so the groups, and with them drops and losses, do not depend on how a batch is cut
//     into micro-batches or ranks). Each expert has cap = ceil(cf * G * k / E) slots per
//     group. Within a group the assignments claim slots choice-major: every token's first
//     choice in token order, then every token's second choice, and so on (GShard's
//     priority: a token's best expert outranks another token's runner-up). An assignment
//     finding its expert full is dropped: it contributes nothing, and the weights of the
//     token's other choices are left as they are (renormalisation happens before drops).
//     cf = 0 is dropless.
//  4. the kept assignments are numbered expert by expert and, within an expert, in token
//     order (then choice order): row r of the experts' buffers. The order is fixed by the
//     routing alone, so results are bit-identical run to run (no atomics, no arrival order).
//  5. load balancing (Switch / GShard), per group: E * sum_e f_e P_e, f_e the fraction of
//     the group's G k assignments (before drops) whose expert is e, P_e the mean prob of e
//     over the group's tokens; the loss is its mean over groups times aux_loss. Router
//     z-loss: the mean over tokens of lse^2, times z_loss. f_e is a count: no gradient.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gpt {

struct MoeConfig {
  int64_t experts = 0;         // E
  int64_t top_k = 1;           // k
  int64_t expert_hidden = 0;   // H
  int64_t shared_experts = 0;  // S: an always-on dense GELU MLP of width S*H (0: none)
  float capacity_factor = 0.f; // cf; 0 dropless
  int64_t group_tokens = 0;    // G; 0: one sequence (the forward's T)
  float aux_loss = 0.f;        // load-balancing loss coefficient
  float z_loss = 0.f;          // router z-loss coefficient
  bool renormalize = false;    // divide the k chosen probs by their sum

  // Throws naming the moe.* key of the first bad value.
  void validate() const;
  // The tokens per group for a forward over sequences of T tokens.
  int64_t group_size(int64_t T) const { return group_tokens > 0 ? group_tokens : T; }
  // Slots per expert per group of G tokens; -1 when dropless.
  int64_t capacity(int64_t G) const;
};

// What one forward's routing decided, kept for its backward. Index i = n k + j is token
// n's j-th choice (an "assignment").
struct MoeRouting {
  Tensor logits, probs;                // [N, E] F32
  std::vector<float> lse;              // [N]
  std::vector<int32_t> expert;         // [N k] chosen expert, best first
  std::vector<float> weight;           // [N k] combine weight (renormalised if configured)
  std::vector<int32_t> row;            // [N k] row in the experts' buffers, -1 when dropped
  std::vector<int32_t> row_token;      // [R] the token of each kept row
  std::vector<int64_t> expert_begin;   // [E + 1] expert e owns rows [begin[e], begin[e + 1])
  std::vector<float> load_fraction;    // [groups, E] f_e of each group
  int64_t N = 0, G = 0;
  double load_balance = 0.0, router_z = 0.0;  // unweighted: E sum f P (mean), mean lse^2
  float aux_loss = 0.f, z_loss = 0.f;         // what the layer adds to the training loss

  int64_t kept() const { return expert_begin.empty() ? 0 : expert_begin.back(); }
};

// Steps 1 to 5 above from r.logits ([N, E], filled by the caller); N a multiple of G.
void moe_route(MoeRouting& r, const MoeConfig& cfg, int64_t G);

// d(logits) [N, E], overwritten, from d(weight) [N k] (the loss's gradient with respect to
// each assignment's combine weight; 0 for dropped ones) and the auxiliary losses, whose
// gradient is scaled by aux_grad_scale (as the model scales its loss's gradient).
void moe_route_backward(Tensor& dlogits, const MoeRouting& r, const MoeConfig& cfg,
                        const std::vector<float>& dweight, float aux_grad_scale);

}  // namespace gpt
