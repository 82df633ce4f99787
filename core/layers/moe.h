// A mixture-of-experts MLP (GShard, Switch Transformer; DeepSeek-MoE's shared experts):
// a router sends each of N tokens [N, C] to k of E experts (core/layers/moe_router.h says
// how, capacity drops included), each expert a GELU MLP fc [H, C] -> gelu -> proj [C, H]
// with biases, and
//   out[n] = sum over n's kept assignments (n, j) of weight[n, j] * expert_j(x[n])
//            + shared(x[n]),
// shared an always-on dense GELU MLP of width S*H (absent when S = 0).
//
// Parameters, under `prefix` (the expert index first, so a ShardSpec along dim 0 can
// later hand each expert-parallel rank its experts):
//   router.weight [E, C] (no bias), experts.fc [E, H, C], experts.fc_bias [E, H],
//   experts.proj [E, C, H], experts.proj_bias [E, C],
//   shared.fc.{weight [S H, C], bias}, shared.proj.{weight [C, S H], bias}.
//
// Each expert runs on a contiguous buffer of the rows routed to it (gathered in the
// router's fixed order), sized once for the most rows a forward can keep: N k dropless,
// or groups * E * capacity. fp32 on the CPU for now: the router, gather and combine are
// plain host loops, the GEMMs and GELUs go through the ops table.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/layers/linear.h"
#include "core/layers/moe_router.h"

namespace gpt {

// What one forward keeps for its backward (one per micro-batch in flight).
struct MoeActs {
  MoeRouting routing;
  Tensor expert_in, expert_pre, expert_act, expert_out;  // [rows, C | H | H | C]
  Tensor shared_pre, shared_act;                         // [N, S H]
};

// Buffers only backward uses; one set can serve every MoE layer.
struct MoeScratch {
  Tensor d_expert_out, d_expert_pre, d_expert_in;  // [rows, C | H | C]
  Tensor d_shared_pre, dx_part, dlogits;           // [N, S H], [N, C], [N, E]
  std::vector<float> dweight;                      // [N k]
};

// The last forward's load, for the metrics log.
struct MoeStats {
  std::vector<int64_t> tokens_per_expert;  // kept assignments per expert
  int64_t dropped = 0;                     // assignments dropped by capacity
  int64_t assignments = 0;                 // N k
};

class MoeLayer {
 public:
  // init_std for the router and the experts' and shared fc; proj_init_std for the
  // projections (GPT-2 scales those by 1/sqrt(2 L)).
  MoeLayer(ParamStore& store, const std::string& prefix, int64_t C, const MoeConfig& cfg,
           float init_std, float proj_init_std);
  // out, x: [N, C] F32 on the CPU, N = B T tokens of sequences of T (groups default to one
  // sequence). The auxiliary losses are in acts.routing (aux_loss, z_loss).
  void forward(MoeActs& acts, Tensor& out, const Tensor& x, int64_t T);
  // dx [N, C] is OVERWRITTEN with d(x) (it is the gradient of a norm's output, a scratch
  // buffer, as matmul_backward's dinp); parameter gradients accumulate. aux_grad_scale
  // multiplies the auxiliary losses' gradient (the model passes the scale of its loss).
  void backward(MoeActs& acts, Tensor& dx, const Tensor& dout, const Tensor& x, float aux_grad_scale,
                MoeScratch& scratch);

  const MoeStats& last_stats() const { return stats_; }
  const MoeConfig& config() const { return cfg_; }

  Param *router, *fc, *fc_bias, *proj, *proj_bias;
  std::unique_ptr<Linear> shared_fc, shared_proj;  // null when S = 0

 private:
  // Rows the experts' buffers need for N tokens in groups of G.
  int64_t row_bound(int64_t N, int64_t G) const;

  MoeConfig cfg_;
  int64_t C_;
  MoeStats stats_;
};

}  // namespace gpt
