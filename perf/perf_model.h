// An analytic performance model of one training step: from a model shape, a cluster
// and a parallel layout, the step time broken into compute, memory-bound ops,
// communication and pipeline bubble, the memory each device holds, and MFU.
//
// Dimension letters, as in Narayanan et al. 2021 and Korthikanti et al. 2022:
//   l layers, h hidden size, a heads, s sequence length, V vocabulary,
//   b micro-batch, B global batch, t = tp, p = pp, v virtual stages per device, d = dp,
//   m = B / (d·b) micro-batches per step per pipeline.
// Sources of the formulas are cited where they are used (perf_model.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/layers/block.h"
#include "core/model/gpt_config.h"
#include "core/tensor.h"
#include "parallel/pipeline/schedule.h"

namespace gpt::perf {

struct ModelShape {
  int n_layer = 12, n_head = 12, n_embd = 768, vocab_size = 50257, seq_len = 1024;
  int max_positions = 0;  // rows of the learned position table (GPT-2's block_size); 0 = seq_len
  bool tied_head = true;  // GPT-2 ties the head to wte; Megatron's GPT runs untie it
  int n_experts = 0;      // MoE: experts per MLP (0 = dense)
  int top_k = 1;          // MoE: experts each token is routed to
  // The LLaMA family (RMSNorm, SwiGLU of width ffn, grouped-query attention over
  // n_kv_head key/value heads, no biases, no position table): GPTConfig's keys and defaults.
  ModelFamily family = ModelFamily::GPT2;
  int n_kv_head = 0;   // 0: n_head
  int ffn_hidden = 0;  // 0: GPTConfig's default (8C/3 rounded up to 256)
  // Parameters of the whole model (learned positions, biases and LayerNorms included;
  // for MoE every expert counted).
  double num_params() const;
  static ModelShape from_gpt(const GPTConfig& c, int seq_len);
  GPTConfig to_gpt() const;  // block_size = max_positions (or seq_len); tie_embeddings = tied_head
};

// The collectives the model times, by kind (comm_bench's operations).
enum class Collective { AllReduce = 0, ReduceScatter, AllGather, AllToAll, SendRecv };
constexpr int kCollectives = 5;
// comm_bench's name of the operation: allreduce reduce_scatter allgather all_to_all sendrecv.
const char* collective_name(Collective k);

// One collective kind's measured cost between the devices of a node (comm_bench, fitted by
// perf::fit_collective): t = bytes_per_rank / bw + steps · latency with the ring's bytes
// and steps (collective_time). From `large_from` message bytes on, the large_* pair applies
// instead: MPI libraries change how they run a collective with the size (algorithm, a
// temporary buffer that no longer fits the allocator's cache), which one line over all
// sizes averages away (perf/calibration.h). bw = 0: the cluster's intra_node_bw and latency.
struct CollectiveCost {
  double bw = 0, latency = 0;  // bytes/s (bus bandwidth), s per ring step
  double large_from = 0;       // message bytes; 0: one regime
  double large_bw = 0, large_latency = 0;
};

// One accelerator type and how the accelerators are wired. Bandwidths are one direction,
// bytes/s; inter_node_bw is the whole node's, shared by its gpus_per_node devices.
struct Cluster {
  std::string name;
  int gpus = 8, gpus_per_node = 8;
  double peak_flops = 0;     // dense bf16 FLOP/s per device
  double memory_bytes = 0;   // per device
  double hbm_bw = 0;         // per device
  double intra_node_bw = 0;  // per device (NVLink / NVSwitch)
  double intra_node_latency = 0;  // s per ring step
  double inter_node_bw = 0;  // per node (all NICs together)
  double inter_node_latency = 0;  // s per ring step
  // Calibrated (perf/published.cpp says on which rows): achieved fraction of peak on the
  // model's GEMMs, and how many times the activation bytes memory-bound ops move.
  double gemm_efficiency = 0.6;
  double memory_traffic = 1.0;
  // How many times longer a rank's compute (GEMMs, memory-bound ops, optimizer) takes
  // when every device of a node computes at once than when it runs alone. 1 for
  // accelerators, each with its own memory; CPU ranks of one socket share its memory
  // bandwidth and last-level cache (and, in a VM, maybe physical cores), which
  // scaling_bench measures by running independent one-rank steps side by side.
  double node_contention = 1;
  Device device = Device::CUDA;  // the backend whose memory plan applies (its workspace, host-side copies)
  // Per collective kind inside a node, indexed by Collective; the presets leave them unset
  // (their single NVLink figure above applies to every kind), a calibration sets them.
  CollectiveCost intra_collective[kCollectives];
};

// "a100-80gb" | "h100-sxm" | "local"; throws naming 'cluster.preset' otherwise.
Cluster cluster_preset(const std::string& name);

struct Layout {
  int tp = 1, pp = 1, virtual_stages = 1, dp = 1, ep = 1;
  // The pipeline schedule (parallel/pipeline/schedule.h); virtual_stages > 1 means the
  // interleaved one whatever this says. It sets the micro-batches in flight on each stage
  // (memory); the bubble is Narayanan et al.'s for every schedule (see predict).
  parallel::pipeline::ScheduleKind schedule = parallel::pipeline::ScheduleKind::OneFOneB;
  // Blocks of each pipeline chunk (pretrain's parallel.layers_per_stage); empty: pretrain's
  // balanced split. Read by the memory plan; the step time takes l / (p·v) per chunk.
  std::vector<int> layers_per_stage;
  int micro_batch = 1;    // b
  int global_batch = 1;   // B, sequences per step
  Recompute recompute = Recompute::None;
  bool zero1 = false;     // optimizer state sharded over dp
  // Under zero1, also shard the fp32 master weights (Megatron's distributed optimizer);
  // this framework's ZeRO-1 keeps them whole on every rank (core/model/memory_plan.h).
  bool shard_master = false;
  bool sequence_parallel = true;  // Korthikanti et al. 2022 SP with TP
  bool flash_attention = true;    // no s×s attention matrix stored
  double tp_overlap = 0;  // fraction of TP communication hidden behind compute
  // Fraction of the gradient reduction that can hide behind backward, of the part that
  // is able to: a bucket is reduced once backward has filled it, so the last bucket's
  // reduction never hides (predict).
  double dp_overlap = 0.5;
  double bucket_mb = 25;  // gradient bucket, MiB of fp32 (pretrain's parallel.bucket_mb)
  // Under ZeRO-1, the fraction of the parameter all-gather hidden behind the next forward
  // (Megatron's --overlap-param-gather). pretrain gathers after the update and waits.
  double param_gather_overlap = 0;
  DType act = DType::BF16;
  int grad_bytes = 4;     // bytes per gradient element in the DP reduction (fp32)
  int gpus() const { return tp * pp * dp; }
  int micro_batches() const { return global_batch / (dp * micro_batch); }  // m
  parallel::pipeline::ScheduleKind pipeline_schedule() const {
    return virtual_stages > 1 ? parallel::pipeline::ScheduleKind::Interleaved : schedule;
  }
};

struct MemoryBreakdown {
  double params = 0, grads = 0, optimizer = 0, activations = 0, workspace = 0;
  double total() const { return params + grads + optimizer + activations + workspace; }
};

struct Prediction {
  // Seconds per step, per device; step = the sum.
  double compute = 0;     // GEMM FLOPs / (peak × gemm_efficiency)
  double memory_ops = 0;  // memory-bound ops (LayerNorm, softmax, GELU, dropout, ...)
  double tp_comm = 0, ep_comm = 0, pp_p2p = 0;
  double bubble = 0;      // pipeline fill and drain, and (v = 1) the idle of unequal stages
  double dp_comm = 0;     // exposed part of the gradient reduction (and ZeRO-1's parameter all-gather)
  double optimizer = 0;
  double step = 0;
  double bubble_fraction = 0;  // (p−1)/(v·m+p−1)
  double model_flops = 0;      // per step, whole job, no recomputation counted
  double hardware_flops = 0;   // per step, recomputation included
  double tflops_per_gpu = 0;   // model FLOPs / step / GPUs / 1e12
  double mfu = 0;
  MemoryBreakdown memory;      // the most loaded device (the pipeline stage that holds most)
  int memory_stage = 0;        // that device's pipeline stage
  bool fits = true;
  std::string limit;           // what costs most beyond compute: "bubble", "communication", ...
};

// Throws gpt::Error naming the key (parallel.tp, train.global_batch, ...) when the layout
// does not fit the model or the cluster.
void validate_layout(const ModelShape& m, const Cluster& c, const Layout& L);

Prediction predict(const ModelShape& m, const Cluster& c, const Layout& L);

// ---- the formulas, exposed for tests ----
// Pipeline bubble as a fraction of the step (Narayanan et al. 2021 §2.2.1, §2.2.2).
double bubble_fraction(int p, int m, int v);
// Bytes each rank sends in a ring all-reduce of `bytes` over n ranks: 2(n−1)/n·bytes.
double ring_allreduce_bytes(double bytes, int n);
// Seconds of one collective of kind k over n ranks on cluster c, as comm_bench counts the
// message (the whole buffer: all chunks for reduce-scatter, all-gather and all-to-all):
// bytes per rank = message × bus factor (2(n−1)/n all-reduce, (n−1)/n reduce-scatter,
// all-gather, all-to-all, 1 send/recv) over the bandwidth, plus the ring's steps (2(n−1),
// n−1, n−1, n−1, 1) times the latency. Inside a node (intra) the kind's CollectiveCost
// when set, chosen by call_bytes (the size of one call; < 0: message_bytes), else
// intra_node_bw/latency; across nodes inter_node_bw / gpus_per_node and inter latency.
double collective_time(const Cluster& c, Collective k, double message_bytes, int n, bool intra,
                       double call_bytes = -1);
// Narayanan et al. 2021 eq. (3): FLOPs of one iteration with full recomputation.
double megatron_paper_flops(double B, double s, double l, double h, double V);
// Model FLOPs without recomputation (Megatron-LM's num_floating_point_operations for a
// GPT with 4h MLP): 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)).
double megatron_model_flops(double B, double s, double l, double h, double V);
// Korthikanti et al. 2022 activation bytes of one layer for one micro-batch per device:
// s·b·h·(34 + 5·a·s/h) without TP; with TP t: s·b·h·(10 + 24/t + 5as/(ht)), or
// s·b·h·(34/t + 5as/(ht)) with sequence parallelism.
double layer_activation_bytes(double s, double b, double h, double a, int t, bool sp, Recompute r,
                              bool flash);

}  // namespace gpt::perf
