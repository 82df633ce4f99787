// A mixture-of-experts MLP (GShard, Switch Transformer; DeepSeek-MoE's shared experts):
// a router sends each of N tokens [N, C] to k of E experts (core/layers/moe_router.h says
// how, capacity drops included), each expert a GELU MLP fc [H, C] -> gelu -> proj [C, H]
// with biases, and
//   out[n] = sum over n's kept assignments (n, j) of weight[n, j] * expert_j(x[n])
//            + shared(x[n]),
// shared an always-on dense GELU MLP of width S*H (absent when S = 0).
//
// Parameters, under `prefix` (the expert index first, so a ShardSpec along dim 0 hands
// each expert-parallel rank its experts; checkpoints store them by global expert index):
//   router.weight [E, C] (no bias), experts.fc [E, H, C], experts.fc_bias [E, H],
//   experts.proj [E, C, H], experts.proj_bias [E, C],
//   shared.fc.{weight [S H, C], bias}, shared.proj.{weight [C, S H], bias}.
// The experts.* tensors are ParamStore::add_expert parameters (their own region).
//
// Each expert runs on a contiguous buffer of the rows routed to it (gathered in the
// router's fixed order), sized once for the most rows a forward can keep: N k dropless,
// or groups * E * capacity. fp32, on the CPU or CUDA (bf16 not yet). Everything on the
// activations goes through the ops table: the router's GEMM, the row movement
// (moe_gather_rows, moe_combine and their backward), the experts' GEMMs and GELUs. The
// routing decisions themselves (softmax, top-k, capacity: sequential and tiny, N x E) run
// on the host (core/layers/moe_router.h): on CUDA the logits come to the host, and the
// indices the row ops need go up once per forward into small tensors kept in MoeActs.
//
// Expert parallelism (an ExpertExchange of P ranks): this rank holds experts
// [first, first + E/P). Routing, capacity and the combine stay on the token's rank
// (groups are the token's sequences, so drops do not depend on the layout); the gathered
// rows go to their experts' ranks in one all-to-all (per-expert counts exchanged first),
// arrive source rank after source rank, and are reordered expert-major (expert, source
// rank, the source's order) so each local expert is one GEMM over contiguous rows and the
// order is fixed by the routing alone; the outputs return by the reverse all-to-all.
// Backward moves the output gradients and the input gradients the same two ways.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/layers/expert_exchange.h"
#include "core/layers/linear.h"
#include "core/layers/moe_router.h"

namespace gpt {

// The rows this rank's experts run on, expert-major: local expert e owns rows
// [begin[e], begin[e + 1]). Without expert parallelism they are this rank's own routed
// rows; with it, every rank's rows for this rank's experts.
struct ExpertRows {
  Tensor in, pre, act, out;  // [rows, C | H | H | C]
  std::vector<int64_t> begin;
};

// What one forward keeps for its backward (one per micro-batch in flight).
struct MoeActs {
  MoeRouting routing;  // host: the router's decisions (its logits are host memory)
  // The routing's indices on the activations' device, uploaded once per forward for the
  // row ops: row_token I32 [rows bound], row I32 [N k], weight F32 [N k].
  Tensor row_token, row, weight;
  Tensor device_logits;  // [N, E]: where the router's GEMM writes when x is not on the CPU
  Tensor expert_in, expert_out;  // [rows, C]: this rank's routed rows, the router's order
  ExpertRows run;                // what the local experts ran (aliases expert_in/out locally)
  // Expert parallelism: rows sent to / received from each rank, and the received rows per
  // (source rank, local expert), source-major.
  std::vector<int64_t> send_rows, recv_rows, recv_counts;
  Tensor shared_pre, shared_act;  // [N, S H]
};

// Buffers only backward uses; one set can serve every MoE layer.
struct MoeScratch {
  Tensor d_expert_out, d_expert_in;        // [rows, C]: this rank's routed rows
  Tensor d_run_out, d_run_pre, d_run_in;   // the local experts' rows [.., C | H | C]
  Tensor staging;                          // expert parallelism: rows in rank order
  Tensor d_shared_pre, dx_part, dlogits;   // [N, S H], [N, C], [N, E] (dlogits: host)
  Tensor device_dlogits;                   // [N, E]: dlogits uploaded, when x is not on the CPU
  Tensor dweight_rows;                     // [N k] F32: d(weight), on the activations' device
  std::vector<float> dweight;              // [N k]: the same on the host, for the router
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
  // exchange: the expert-parallel group (null: every expert here).
  MoeLayer(ParamStore& store, const std::string& prefix, int64_t C, const MoeConfig& cfg,
           float init_std, float proj_init_std, ExpertExchange* exchange = nullptr);
  // out, x: [N, C] F32 (on the CPU or CUDA), N = B T tokens of sequences of T (groups default to one
  // sequence). The auxiliary losses are in acts.routing (aux_loss, z_loss).
  void forward(MoeActs& acts, Tensor& out, const Tensor& x, int64_t T);
  // dx [N, C] is OVERWRITTEN with d(x) (it is the gradient of a norm's output, a scratch
  // buffer, as matmul_backward's dinp); parameter gradients accumulate. aux_grad_scale
  // multiplies the auxiliary losses' gradient (the model passes the scale of its loss).
  void backward(MoeActs& acts, Tensor& dx, const Tensor& dout, const Tensor& x, float aux_grad_scale,
                MoeScratch& scratch);

  const MoeStats& last_stats() const { return stats_; }
  const MoeConfig& config() const { return cfg_; }
  int64_t local_experts() const { return local_; }   // E / P
  int64_t first_expert() const { return first_; }    // this rank's first expert

  Param *router, *fc, *fc_bias, *proj, *proj_bias;
  std::unique_ptr<Linear> shared_fc, shared_proj;  // null when S = 0

 private:
  // Rows the experts' buffers need for N tokens in groups of G: this rank's routed rows,
  // and (expert parallelism) the rows every rank can send to this rank's experts.
  int64_t row_bound(int64_t N, int64_t G) const;
  int64_t received_row_bound(int64_t N, int64_t G) const;
  // Forward through the local experts: run.out from run.in.
  void run_experts(ExpertRows& run);
  // Backward through them: d_in from d_out; parameter gradients accumulate.
  void run_experts_backward(const ExpertRows& run, const Tensor& d_out, Tensor& d_pre, Tensor& d_in);
  // Expert parallelism: this rank's routed rows `local` (router order) to the owners'
  // expert-major buffer `run_rows` (forward: inputs; backward: output gradients).
  void dispatch(MoeActs& acts, const Tensor& local, Tensor& run_rows, Tensor& staging);
  // ... and back: the owners' expert-major rows to this rank's routed rows.
  void combine_back(MoeActs& acts, const Tensor& run_rows, Tensor& local, Tensor& staging);

  MoeConfig cfg_;
  int64_t C_;
  ExpertExchange* exchange_;
  int64_t local_ = 0, first_ = 0;  // experts held here: [first_, first_ + local_)
  Tensor staging_;                 // forward's rows in rank order (shared by the layer's micro-batches)
  MoeStats stats_;
};

}  // namespace gpt
