#include "perf/perf_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/model/memory_plan.h"
#include "parallel/layout_memory.h"

namespace gpt::perf {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// Matrix parameters of one transformer layer: attention's and one MLP's. GPT-2: qkv 3h²
// and projection h², MLP 8h² (4h wide). LLaMA: qkv C·(NH + 2·NKV)·HS and output NH·HS·C
// (grouped-query attention), SwiGLU's gate, up and down 3·F·C.
struct LayerMatrices {
  double attn = 0, mlp = 0;
};
LayerMatrices layer_matrices(const ModelShape& m) {
  const double h = m.n_embd;
  if (m.family == ModelFamily::Llama) {
    const GPTConfig g = m.to_gpt();
    const double hs = g.head_size(), q = (g.n_head + 2.0 * g.kv_heads()) * hs, a = g.n_head * hs;
    return {h * q + a * h, 3.0 * double(g.ffn()) * h};
  }
  return {4 * h * h, 8 * h * h};
}

// Parameters of one transformer layer, matrices plus vectors: GPT-2 12h² + 13h (biases
// 4h attention + 5h MLP, two LayerNorms 4h); LLaMA's two RMSNorms 2h. A MoE layer keeps
// attention and has n_experts MLPs (GPT-2's, with biases), ep of which share a device.
double layer_params(const ModelShape& m, int ep) {
  const double h = m.n_embd;
  const LayerMatrices w = layer_matrices(m);
  if (m.family == ModelFamily::Llama) return w.attn + w.mlp + 2 * h;
  const double attn = w.attn + 4 * h + 4 * h, mlp = w.mlp + 5 * h;
  return attn + (m.n_experts > 0 ? mlp * m.n_experts / ep : mlp);
}

// Expert parameters of one layer on a device holding n_experts/ep of them (GPT-2 MLPs with
// biases, as layer_params counts them); 0 for a dense layer.
double expert_layer_params(const ModelShape& m, int ep) {
  if (m.n_experts == 0 || m.family == ModelFamily::Llama) return 0;
  return (layer_matrices(m).mlp + 5.0 * m.n_embd) * m.n_experts / ep;
}

// Forward FLOPs of one layer for one micro-batch, whole layer (before TP): 2 FLOPs per
// matrix parameter per token (GPT-2: 24·b·s·h², qkv 6, projection 2, MLP 16) and
// attention's QKᵀ and AV, 4·b·s²·h (Narayanan et al. 2021 §5.1, the derivation of eq. (3)).
// A MoE layer runs top_k MLPs.
double layer_forward_flops(const ModelShape& m, double b) {
  const double s = m.seq_len, h = m.n_embd;
  const LayerMatrices w = layer_matrices(m);
  const double mlp = 2 * b * s * w.mlp * (m.n_experts > 0 ? m.top_k : 1);
  return 2 * b * s * w.attn + mlp + 4 * b * s * s * h;
}

// Seconds of one ring collective moving `bytes` per rank over n ranks at bw, with a
// latency per ring step (2(n−1) steps for an all-reduce).
double ring_time(double bytes_per_rank, int steps, double bw, double latency) {
  return bytes_per_rank / bw + steps * latency;
}

}  // namespace

double ModelShape::num_params() const {
  if (family == ModelFamily::Llama && n_experts == 0) return double(to_gpt().num_params());
  const double h = n_embd, l = n_layer;
  const double positions = max_positions > 0 ? max_positions : seq_len;
  return l * layer_params(*this, 1) + double(vocab_size) * h * (tied_head ? 1 : 2) + positions * h + 2 * h;
}

ModelShape ModelShape::from_gpt(const GPTConfig& c, int seq_len) {
  ModelShape m;
  m.n_layer = c.n_layer, m.n_head = c.n_head, m.n_embd = c.n_embd, m.vocab_size = c.vocab_size;
  m.seq_len = seq_len, m.max_positions = c.block_size;
  m.tied_head = c.tie_embeddings, m.family = c.family, m.n_kv_head = c.n_kv_head, m.ffn_hidden = c.ffn_hidden;
  return m;
}

GPTConfig ModelShape::to_gpt() const {
  GPTConfig c;
  c.n_layer = n_layer, c.n_head = n_head, c.n_embd = n_embd, c.vocab_size = vocab_size;
  c.block_size = max_positions > 0 ? max_positions : seq_len;
  c.family = family, c.n_kv_head = n_kv_head, c.ffn_hidden = ffn_hidden, c.tie_embeddings = tied_head;
  return c;
}

double bubble_fraction(int p, int m, int v) {
  // Narayanan et al. 2021: GPipe and 1F1B idle (p−1)/(m+p−1) of the step (§2.2.1); the
  // interleaved schedule with v model chunks per device cuts it to (p−1)/(v·m+p−1) (§2.2.2).
  if (p <= 1) return 0;
  return double(p - 1) / (double(v) * m + p - 1);
}

double ring_allreduce_bytes(double bytes, int n) { return n > 1 ? 2.0 * (n - 1) / n * bytes : 0; }

const char* collective_name(Collective k) {
  static const char* names[kCollectives] = {"allreduce", "reduce_scatter", "allgather", "all_to_all", "sendrecv"};
  return names[int(k)];
}

double collective_time(const Cluster& c, Collective k, double message_bytes, int n, bool intra, double call_bytes) {
  if (n <= 1 || message_bytes <= 0) return 0;
  double factor = double(n - 1) / n, steps = n - 1;  // reduce-scatter, all-gather, all-to-all
  if (k == Collective::AllReduce) factor *= 2, steps *= 2;
  if (k == Collective::SendRecv) factor = 1, steps = 1;
  double bw = intra ? c.intra_node_bw : c.inter_node_bw / c.gpus_per_node;
  double latency = intra ? c.intra_node_latency : c.inter_node_latency;
  const CollectiveCost& own = c.intra_collective[int(k)];
  if (intra && own.bw > 0) {
    const bool large = own.large_from > 0 && own.large_bw > 0 && (call_bytes < 0 ? message_bytes : call_bytes) >= own.large_from;
    bw = large ? own.large_bw : own.bw;
    latency = large ? own.large_latency : own.latency;
  }
  return ring_time(factor * message_bytes, int(steps), bw, latency);
}

double megatron_paper_flops(double B, double s, double l, double h, double V) {
  // Narayanan et al. 2021, eq. (3): F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)).
  return 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
}

double megatron_model_flops(double B, double s, double l, double h, double V) {
  // Megatron-LM training.py num_floating_point_operations (dense GPT, 4h MLP, no GQA):
  // 12·B·s·l·h²·(6 + s/h + V/(2·l·h)) = 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)).
  return 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
}

double layer_activation_bytes(double s, double b, double h, double a, int t, bool sp, Recompute r,
                              bool flash) {
  // Korthikanti et al. 2022 (Reducing Activation Recomputation in Large Transformer
  // Models), §4: eq. (1) s·b·h·(34 + 5as/h); eq. (2) with TP; eq. (3) with TP + SP.
  // Selective recomputation drops the 5as/h attention term (§5); full recomputation
  // keeps only the layer input, 2·s·b·h (§5, eq. (6) per layer). Flash attention never
  // stores the s×s scores, so it drops the 5as/h term too.
  if (r == Recompute::Full) return 2 * s * b * h / (sp ? t : 1);
  const double linear = sp ? 34.0 / t : 10.0 + 24.0 / t;
  const double attn = (r == Recompute::Selective || flash) ? 0 : 5 * a * s / (h * t);
  return s * b * h * (linear + attn);
}

void validate_layout(const ModelShape& m, const Cluster& c, const Layout& L) {
  auto positive = [](double v, const char* key) {
    GPT_CHECK(v > 0, std::string("config key '") + key + "' must be positive, got " + num(v));
  };
  positive(m.n_layer, "model.n_layer");
  positive(m.n_head, "model.n_head");
  positive(m.n_embd, "model.n_embd");
  positive(m.vocab_size, "model.vocab_size");
  positive(m.seq_len, "train.seq_len");
  positive(L.tp, "parallel.tp");
  positive(L.pp, "parallel.pp");
  positive(L.dp, "parallel.dp");
  positive(L.ep, "parallel.ep");
  positive(L.virtual_stages, "parallel.virtual_stages");
  positive(L.micro_batch, "train.micro_batch");
  positive(L.global_batch, "train.global_batch");
  positive(c.gpus, "cluster.gpus");
  GPT_CHECK(m.n_embd % m.n_head == 0, "config key 'model.n_embd' (" + num(m.n_embd) +
                                          ") is not divisible by 'model.n_head' (" + num(m.n_head) + ")");
  GPT_CHECK(L.gpus() == c.gpus, "config key 'cluster.gpus' (" + num(c.gpus) +
                                    ") != parallel.tp x parallel.pp x parallel.dp (" + num(L.tp) + " x " +
                                    num(L.pp) + " x " + num(L.dp) + " = " + num(L.gpus()) + ")");
  GPT_CHECK(m.n_head % L.tp == 0, "config key 'parallel.tp' (" + num(L.tp) + ") does not divide 'model.n_head' (" +
                                      num(m.n_head) + ")");
  GPT_CHECK(m.n_layer % (L.pp * L.virtual_stages) == 0,
            std::string("config key '") + (L.virtual_stages > 1 ? "parallel.virtual_stages" : "parallel.pp") +
                "': model.n_layer (" + num(m.n_layer) +
                ") is not divisible by parallel.pp x parallel.virtual_stages (" + num(L.pp) + " x " +
                num(L.virtual_stages) + ")");
  GPT_CHECK(L.virtual_stages == 1 || L.pp > 1,
            "config key 'parallel.virtual_stages' needs parallel.pp > 1, got " + num(L.virtual_stages));
  GPT_CHECK(L.global_batch % (L.dp * L.micro_batch) == 0,
            "config key 'train.global_batch' (" + num(L.global_batch) +
                ") is not divisible by parallel.dp x train.micro_batch (" + num(L.dp) + " x " +
                num(L.micro_batch) + ")");
  GPT_CHECK(L.dp % L.ep == 0, "config key 'parallel.ep' (" + num(L.ep) + ") does not divide parallel.dp (" +
                                  num(L.dp) + ")");
  GPT_CHECK(L.ep == 1 || (m.n_experts > 0 && m.n_experts % L.ep == 0),
            "config key 'parallel.ep' (" + num(L.ep) + ") does not divide model.n_experts (" +
                num(m.n_experts) + ")");
  // What pretrain refuses for the same layout (launch/config.cpp, parallel/topology.cpp, the
  // pipeline runner): each TP rank keeps whole key/value heads for its query heads.
  const int kv_heads = m.n_kv_head > 0 ? m.n_kv_head : m.n_head;
  GPT_CHECK(kv_heads % L.tp == 0, "config key 'parallel.tp' (" + num(L.tp) + ") does not divide 'model.n_kv_head' (" +
                                      num(kv_heads) + ")");
  const bool sp = L.sequence_parallel && L.tp > 1;
  GPT_CHECK(!sp || int64_t(L.micro_batch) * m.seq_len % L.tp == 0,
            "config key 'parallel.sequence_parallel': train.micro_batch x train.seq_len (" +
                num(double(L.micro_batch) * m.seq_len) + ") is not divisible by parallel.tp (" + num(L.tp) + ")");
  using parallel::pipeline::ScheduleKind;
  GPT_CHECK(L.pp == 1 || L.pipeline_schedule() != ScheduleKind::ZeroBubbleH1 || L.recompute == Recompute::None,
            "config key 'parallel.schedule' = zb-h1 delays weight gradients, which read the saved activations: it "
            "needs 'train.recompute' = none");
  GPT_CHECK(L.virtual_stages == 1 || L.micro_batches() >= L.pp,
            "config key 'train.global_batch': the interleaved schedule needs at least parallel.pp (" + num(L.pp) +
                ") micro-batches per step, got " + num(L.micro_batches()) +
                " (train.global_batch / (parallel.dp x train.micro_batch))");
}

Prediction predict(const ModelShape& m, const Cluster& c, const Layout& L) {
  validate_layout(m, c, L);
  const double s = m.seq_len, h = m.n_embd, a = m.n_head, V = m.vocab_size, l = m.n_layer;
  const double b = L.micro_batch, B = L.global_batch;
  const int t = L.tp, p = L.pp, v = L.virtual_stages, d = L.dp;
  const double mb = L.micro_batches(), layers = l / p;  // per device
  // A group stays inside a node when its ranks are adjacent and few enough (TP innermost,
  // then pipeline, then data, as the rank grid orders them: parallel/topology.h); each
  // collective is timed at its kind's cost (collective_time).
  auto coll = [&](Collective k, double message, int n, int span, double call = -1) {
    return collective_time(c, k, message, n, span <= c.gpus_per_node, call);
  };
  Prediction r;

  // Compute: forward, backward (2× forward), the recomputed forward; the head's logits GEMM
  // (6·b·s·h·V forward + backward) is never recomputed. The head runs on the last stage;
  // it is spread over the p stages here, as if the stages were balanced (optimistic by up
  // to 6bshV/(t·p) per micro-batch on the last stage).
  const double fwd = layer_forward_flops(m, b);
  const double passes = L.recompute == Recompute::Full ? 4 : 3;
  const double selective = L.recompute == Recompute::Selective ? 4 * b * s * s * h : 0;
  const double layer_hw = fwd * passes + selective, head = 6 * b * s * h * V;
  // Ranks that share a node slow each other's compute (Cluster::node_contention).
  const bool shared_node = std::min(L.gpus(), c.gpus_per_node) > 1;
  const double contention = shared_node ? c.node_contention : 1;
  r.compute = contention * (mb * layers * layer_hw / t + mb * head / (t * p)) / (c.peak_flops * c.gemm_efficiency);
  r.hardware_flops = (B / b) * (l * layer_hw + head);
  r.model_flops = (B / b) * (l * fwd * 3 + head);

  // Memory-bound ops touch each layer's activation bytes (Korthikanti's count, the bytes a
  // layer stores without recomputation) memory_traffic times per pass.
  const double act_layer = layer_activation_bytes(s, b, h, a, t, L.sequence_parallel, Recompute::None,
                                                   L.flash_attention);
  r.memory_ops = contention * c.memory_traffic * mb * layers * act_layer * passes / c.hbm_bw;

  // TP: per layer 2 all-reduces forward and 2 backward of b·s·h activation values (Megatron's f
  // and g operators, Shoeybi et al. 2019 §3), 2 more in the recomputed forward. With SP
  // each is a reduce-scatter + all-gather: the same bytes.
  // Values are the activation dtype's (2 bytes in bf16; fp32 runs, as on CPU, move 4).
  const double act_bytes = dtype_size(L.act);
  if (t > 1) {
    const double n_ar = 4 + (L.recompute == Recompute::Full ? 2 : 0), msg = b * s * h * act_bytes;
    const double one = L.sequence_parallel ? coll(Collective::ReduceScatter, msg, t, t) + coll(Collective::AllGather, msg, t, t)
                                           : coll(Collective::AllReduce, msg, t, t);
    r.tp_comm = mb * layers * n_ar * one * (1 - L.tp_overlap);
  }
  // EP (core/layers/moe.cpp, parallel/expert/ep_exchange.h): per MoE layer and micro-batch
  // an int32 all-to-all of the per-expert counts (n_experts of them from each rank) and
  // four all-to-all-v's of rows, C values each in the activation dtype: dispatch and combine
  // forward, their gradients backward. A rank sends its tokens' top_k rows, (ep−1)/ep of them
  // to other ranks under balanced routing, and receives as many: comm_bench's all-to-all
  // with a message (all chunks) of b·s·top_k rows, or b·s/t of tokens when sequence
  // parallelism shards them over TP (otherwise each TP rank routes all of them).
  if (L.ep > 1 && m.n_experts > 0) {
    const int span = t * p * L.ep;
    const double tokens = b * s / (L.sequence_parallel ? t : 1);
    const double rows = coll(Collective::AllToAll, tokens * m.top_k * h * act_bytes, L.ep, span);
    const double counts = coll(Collective::AllToAll, 4.0 * m.n_experts, L.ep, span);
    r.ep_comm = mb * layers * (4 * rows + counts);
  }
  // PP: each micro-batch crosses every chunk boundary forward (activations) and backward
  // (their gradients), b·s·h activation values, split over the t TP ranks (Narayanan et al.
  // 2021 §4.1, scatter/gather): one send/recv each.
  if (p > 1) r.pp_p2p = mb * v * 2 * coll(Collective::SendRecv, b * s * h * act_bytes / t, 2, t * p);

  // Bubble: the per-micro-batch work stretched by (p−1)/(v·m) (bubble_fraction's source),
  // for GPipe and 1F1B alike; ZB-H1 is given 1F1B's, an upper bound (Qi et al. 2023 fill
  // part of it with weight-gradient passes).
  r.bubble_fraction = bubble_fraction(p, int(mb), v);
  const double pipelined = r.compute + r.memory_ops + r.tp_comm + r.ep_comm + r.pp_p2p;
  r.bubble = pipelined * r.bubble_fraction / (1 - r.bubble_fraction);
  // Without interleaving, the stages are not equal: the last holds the LM head, and the
  // layers split as pretrain splits them (parallel::pipeline_chunk_layers, the head's cost
  // counted). GPipe and 1F1B then take sum_s τ_s + (m − 1) max_s τ_s, τ_s stage s's time
  // per micro-batch: each micro-batch passes every stage once, and the slowest stage paces
  // the other m − 1 (for equal stages, (m + p − 1) τ, the formula above). The idle this
  // adds is counted in the bubble.
  if (p > 1 && v == 1) {
    parallel::MemoryLayout ml;
    ml.pp = p, ml.layers_per_chunk = L.layers_per_stage;
    const std::vector<parallel::pipeline::LayerRange> split = parallel::pipeline_chunk_layers(m.to_gpt(), int(s), ml);
    // Per micro-batch: the head's compute (on the last stage only), a block's share of
    // everything else that scales with blocks, and each stage's send/recv.
    const double head_time = contention * head / t / (c.peak_flops * c.gemm_efficiency);
    const double block_time = (pipelined - r.pp_p2p - mb * head_time / p) / (mb * layers);
    double sum = 0, slowest = 0;
    for (int st = 0; st < p; ++st) {
      const double tau = split[size_t(st)].count() * block_time + (st == p - 1 ? head_time : 0) + r.pp_p2p / mb;
      sum += tau, slowest = std::max(slowest, tau);
    }
    r.bubble = sum + (mb - 1) * slowest - pipelined;
  }

  // Parameters on the most loaded device: its layers (sharded by TP, experts by EP) plus
  // the embedding (wte by TP, GPT-2's positions whole) on the first stage.
  const double positions = m.family == ModelFamily::Llama ? 0 : m.max_positions > 0 ? m.max_positions : s;
  const double params = layers * layer_params(m, L.ep) / t + V * h / t + positions * h +
                        (!m.tied_head && p == 1 ? V * h / t : 0);
  // DP: ring all-reduce of the gradients, or under ZeRO-1 its two halves, a reduce-scatter
  // of the gradients and, after the update, an all-gather of the parameters, each timed at
  // its own kind's cost. The gradients reduce in k buckets, each started when backward has
  // filled it (parallel/data_parallel.h): the last one starts when backward ends, so at
  // most (k−1)/k of the reduction can hide behind it, of which dp_overlap is hidden. With
  // one bucket (small models) nothing hides. A call moves one bucket, whose size picks the
  // cost's regime (CollectiveCost::large_from); the latency is counted once per reduction.
  // MoE (parallel/data_parallel.cpp): the dense parameters reduce over the d dp ranks, the
  // experts (n_experts/ep per layer here) over the d/ep ranks holding the same experts, in
  // a region with buckets of its own; both are averaged over dp.
  const double expert_params = layers * expert_layer_params(m, L.ep) / t;
  auto reduction = [&](double n_params, int n, int span) {
    if (n <= 1 || n_params <= 0) return 0.0;
    const double grads = n_params * L.grad_bytes, bucket = L.bucket_mb * 1024 * 1024;
    const double buckets = std::max(1.0, std::ceil(grads / bucket)), call = std::min(grads, bucket);
    const double hidden = L.dp_overlap * (buckets - 1) / buckets;
    if (!L.zero1) return coll(Collective::AllReduce, grads, n, span, call) * (1 - hidden);
    // The all-gather is one call over the region, after the update (clip_and_step), of
    // the fp32 values: as many bytes as the gradients.
    return coll(Collective::ReduceScatter, grads, n, span, call) * (1 - hidden) +
           coll(Collective::AllGather, grads, n, span, grads) * (1 - L.param_gather_overlap);
  };
  if (d > 1) r.dp_comm = reduction(params - expert_params, d, t * p * d) + reduction(expert_params, d / L.ep, t * p * d);
  // With pipeline parallelism a tied head's gradient is summed with the embedding's, an
  // all-reduce of V·h/t fp32 values between the first and the last stage after backward
  // (launch/pipeline_runner.cpp, sum_tied_embedding; Megatron's embedding all-reduce).
  // Once per step, so outside the bubble's stretch; counted in pp_p2p.
  const double tied_sum = p > 1 && m.tied_head ? coll(Collective::AllReduce, V * h / t * L.grad_bytes, 2, t * p) : 0;
  r.pp_p2p += tied_sum;
  // AdamW reads and writes fp32 value, grad, m, v and writes the bf16 copy: ~32 B/param.
  const double shards = L.zero1 ? d : 1;
  r.optimizer = contention * params / shards * 32 / c.hbm_bw;
  r.step = pipelined + r.bubble + tied_sum + r.dp_comm + r.optimizer;
  r.tflops_per_gpu = r.model_flops / r.step / L.gpus() / 1e12;
  r.mfu = r.model_flops / r.step / L.gpus() / c.peak_flops;

  // Memory: pretrain's own per-rank plan for this layout (parallel/layout_memory.h, the
  // function pretrain's start-up plan and --train.plan_only call), on the stage that holds
  // most. The analytic path below remains only for what pretrain cannot run, so no plan
  // of it exists: experts (MoE, expert parallelism), Megatron's distributed optimizer
  // (shard_master) and attention that stores the s×s scores (no flash attention), the
  // published Megatron runs' settings (perf/published.cpp).
  const bool master_sharded = L.shard_master && shards > 1 && L.act != DType::F32;
  if (m.n_experts == 0 && L.ep == 1 && !master_sharded && L.flash_attention) {
    parallel::MemoryLayout ml;
    ml.tp = t, ml.pp = p, ml.dp = d, ml.sp = L.sequence_parallel && t > 1, ml.zero1 = L.zero1;
    ml.schedule = L.pipeline_schedule(), ml.virtual_stages = v, ml.micro_batches = int(mb);
    ml.layers_per_chunk = L.layers_per_stage;
    const parallel::StageMemory sm =
        parallel::largest_stage_memory(m.to_gpt(), L.micro_batch, m.seq_len, L.recompute, L.act, c.device, ml);
    const MemoryPlan& mp = sm.plan;
    r.memory = {double(mp.params), double(mp.grads), double(mp.optimizer), double(mp.activations + mp.logits),
                double(mp.workspace)};
    r.memory_stage = sm.stage;
  } else {
    // The same byte accounting per parameter (fp32 value + bf16 copy, fp32 grad, AdamW m,
    // v and the reduced grad shard under ZeRO-1) with Korthikanti's activations.
    const double as = dtype_size(L.act);
    r.memory.params = params * (master_sharded ? as : 4 + (L.act == DType::F32 ? 0 : as));
    r.memory.grads = params * 4;
    r.memory.optimizer = (master_sharded ? 12 : 8) * params / shards + (shards > 1 ? 4 * params / shards : 0);
    // 1F1B keeps min(m, p) micro-batches in flight on the first stage; interleaving adds
    // (p−1)/(p·v) of that (Korthikanti et al. 2022 §4.2.3).
    const double in_flight = std::min(mb, double(p)) * (v > 1 ? 1 + double(p - 1) / (p * v) : 1);
    double act = layers * in_flight * layer_activation_bytes(s, b, h, a, t, L.sequence_parallel, L.recompute,
                                                              L.flash_attention);
    if (L.recompute == Recompute::Full) act += act_layer;  // the layer being recomputed
    // The formulas count 16-bit activations; then one micro-batch's logits (vocab-parallel).
    r.memory.activations = act * as / 2 + s * b * V / t * as;
    r.memory.workspace = double(backend_workspace_bytes(c.device));
  }
  r.fits = r.memory.total() <= c.memory_bytes;

  // What limits it beyond compute: memory when nearly full, else the largest overhead.
  const double comm = r.tp_comm + r.ep_comm + r.pp_p2p + r.dp_comm;
  char lim[96];
  if (r.memory.total() > 0.9 * c.memory_bytes)
    std::snprintf(lim, sizeof lim, "memory (%.0f%% used)", 100 * r.memory.total() / c.memory_bytes);
  else if (std::max({r.bubble, comm, r.memory_ops}) < 0.05 * r.step)
    std::snprintf(lim, sizeof lim, "compute (GEMMs %.0f%% of step)", 100 * r.compute / r.step);
  else if (r.bubble >= comm && r.bubble >= r.memory_ops)
    std::snprintf(lim, sizeof lim, "bubble (%.0f%% of step)", 100 * r.bubble / r.step);
  else if (comm >= r.memory_ops)
    std::snprintf(lim, sizeof lim, "communication (%.0f%% of step)", 100 * comm / r.step);
  else
    std::snprintf(lim, sizeof lim, "memory-bound ops (%.0f%% of step)", 100 * r.memory_ops / r.step);
  r.limit = lim;
  return r;
}

}  // namespace gpt::perf
