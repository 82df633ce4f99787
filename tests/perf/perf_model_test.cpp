// The performance model's formulas against values computed by hand, the memory model
// against pretrain's own plan, and bad layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/model/memory_plan.h"
#include "parallel/layout_memory.h"
#include "perf/perf_model.h"
#include "tests/support/error_of.h"

namespace gpt::perf {
namespace {

TEST(PerfModel, BubbleFractions) {
  // (p−1)/(m+p−1) for 1F1B; (p−1)/(v·m+p−1) interleaved (Narayanan et al. 2021 §2.2).
  EXPECT_DOUBLE_EQ(bubble_fraction(4, 12, 1), 3.0 / 15.0);
  EXPECT_DOUBLE_EQ(bubble_fraction(8, 48, 2), 7.0 / 103.0);
  EXPECT_DOUBLE_EQ(bubble_fraction(1, 7, 1), 0.0);
}

TEST(PerfModel, RingBytes) {
  EXPECT_DOUBLE_EQ(ring_allreduce_bytes(1000, 4), 1500.0);  // 2·3/4·1000
  EXPECT_DOUBLE_EQ(ring_allreduce_bytes(1000, 2), 1000.0);
  EXPECT_DOUBLE_EQ(ring_allreduce_bytes(1000, 1), 0.0);
}

TEST(PerfModel, PaperFlopsOnThe145BRow) {
  // Narayanan et al. 2021 eq. (3) for B=2304, s=2048, l=80, h=12288, V=51200, by terms:
  // 96·B·s·l·h² = 5471873547255152640, ·s/(6h) → 16·B·s²·l·h = 151996487423754240,
  // ·V/(16lh) → 6·B·s·h·V = 17812088369971200; sum 5641682123048878080.
  EXPECT_NEAR(megatron_paper_flops(2304, 2048, 80, 12288, 51200), 5641682123048878080.0, 1e4);
  // The model counts the same FLOPs when it recomputes everything, and model FLOPs
  // (72·...·(1 + s/6h + V/12lh)) without recomputation.
  ModelShape m;
  m.n_layer = 80, m.n_head = 96, m.n_embd = 12288, m.vocab_size = 51200, m.seq_len = 2048;
  Cluster c = cluster_preset("a100-80gb");
  c.gpus = 1536;
  Layout L;
  L.tp = 8, L.pp = 8, L.virtual_stages = 2, L.dp = 24, L.micro_batch = 2, L.global_batch = 2304;
  L.recompute = Recompute::Full;
  const Prediction p = predict(m, c, L);
  EXPECT_NEAR(p.hardware_flops / 5641682123048878080.0, 1.0, 1e-12);
  EXPECT_NEAR(p.model_flops / megatron_model_flops(2304, 2048, 80, 12288, 51200), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(p.bubble_fraction, 7.0 / 103.0);  // m = 2304 / (24·2) = 48
}

TEST(PerfModel, ActivationFormula) {
  // Korthikanti et al. 2022: s·b·h·(34 + 5as/h) = 2048·12288·(34 + 80) without TP.
  const double s = 2048, h = 12288, a = 96;
  EXPECT_DOUBLE_EQ(layer_activation_bytes(s, 1, h, a, 1, false, Recompute::None, false), 2868903936.0);
  // TP 8 without SP: 10 + 24/8 + 80/8 = 23; with SP: 34/8 + 80/8 = 14.25.
  EXPECT_DOUBLE_EQ(layer_activation_bytes(s, 1, h, a, 8, false, Recompute::None, false), 578813952.0);
  EXPECT_DOUBLE_EQ(layer_activation_bytes(s, 1, h, a, 8, true, Recompute::None, false), 358612992.0);
  // Selective drops the attention term; full keeps the layer input (2·s·b·h / t with SP).
  EXPECT_DOUBLE_EQ(layer_activation_bytes(s, 1, h, a, 8, true, Recompute::Selective, false), s * h * 34 / 8);
  EXPECT_DOUBLE_EQ(layer_activation_bytes(s, 1, h, a, 8, true, Recompute::Full, false), 2 * s * h / 8);
}

TEST(PerfModel, ParameterCountMatchesTheModel) {
  for (const char* name : {"gpt2-124M", "gpt2-1.5B"}) {
    const GPTConfig g = gpt_preset(name);
    EXPECT_DOUBLE_EQ(ModelShape::from_gpt(g, 256).num_params(), double(g.num_params())) << name;
  }
}

// Layouts runnable here (tp = pp = 1, any dp, ZeRO-1 on or off): the model's memory is
// pretrain's own plan, called as launch/trainer.cpp calls it.
TEST(PerfModel, MemoryEqualsPretrainPlan) {
  const GPTConfig g = gpt_preset("gpt2-124M");
  for (const char* preset : {"local", "h100-sxm"})
    for (int dp : {1, 2, 4})
      for (bool zero1 : {false, true})
        for (Recompute r : {Recompute::None, Recompute::Selective, Recompute::Full})
          for (DType act : {DType::F32, DType::BF16}) {
            Cluster c = cluster_preset(preset);
            c.gpus = dp;
            Layout L;
            L.dp = dp, L.micro_batch = 4, L.global_batch = 8 * dp, L.recompute = r, L.zero1 = zero1;
            L.act = act;
            const Prediction p = predict(ModelShape::from_gpt(g, 512), c, L);
            const MemoryPlan plan = plan_memory(g, 4, 512, r, zero1 ? dp : 1, act, c.device);
            EXPECT_EQ(size_t(p.memory.total()), plan.total())
                << preset << " dp " << dp << " zero1 " << zero1 << " recompute " << int(r);
            EXPECT_EQ(size_t(p.memory.optimizer), plan.optimizer);
          }
}

// What a pipeline stage holds, against each schedule's definition: GPipe keeps all m
// micro-batches, 1F1B p − r (Narayanan et al. 2021 §2.2.1), ZB-H1 p on every stage (Qi et
// al. 2023, H1: 1F1B's peak of the first stage), interleaved 1F1B its warm-up forwards plus
// one, 2(p − r − 1) + (v − 1)p + 1 chunks (Megatron-LM's get_num_warmup_microbatches),
// over its v chunks, rounded up.
TEST(PerfModel, PipelineStageInFlightFollowsTheSchedule) {
  using parallel::pipeline::ScheduleKind;
  GPTConfig g = gpt_preset("tiny");
  g.n_layer = 16;
  const int m = 8;
  for (int p : {2, 4})
    for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::ZeroBubbleH1,
                           ScheduleKind::Interleaved}) {
      parallel::MemoryLayout L;
      L.pp = p, L.schedule = k, L.micro_batches = m, L.virtual_stages = k == ScheduleKind::Interleaved ? 2 : 1;
      const int v = L.virtual_stages;
      L.layers_per_chunk.assign(size_t(p * v), 16 / (p * v));
      for (int r = 0; r < p; ++r) {
        const PlanStage st = parallel::pipeline_plan_stage(g, 64, L, r);
        int want = 0;
        if (k == ScheduleKind::GPipe) want = m;
        if (k == ScheduleKind::OneFOneB) want = p - r;
        if (k == ScheduleKind::ZeroBubbleH1) want = p;
        if (k == ScheduleKind::Interleaved) want = (2 * (p - r - 1) + (v - 1) * p + 1 + v - 1) / v;
        EXPECT_EQ(st.in_flight, want) << "p " << p << " schedule " << int(k) << " stage " << r;
        EXPECT_EQ(st.layers, 16 / p);
        EXPECT_EQ(st.embedding, r == 0);
        EXPECT_EQ(st.head, r == p - 1);
        EXPECT_EQ(st.split_backward, k == ScheduleKind::ZeroBubbleH1);
      }
    }
}

// Every layout pretrain runs, both families: the model's memory per device is pretrain's
// plan of the stage that holds most, with the layout's TP degree, SP, ZeRO-1 shards
// (the dp ranks), dtype and backend, each stage planned as the trainer plans its rank.
TEST(PerfModel, MemoryIsTheLargestStagesPlanForEveryLayout) {
  using parallel::pipeline::ScheduleKind;
  GPTConfig gpt2 = gpt_preset("tiny");
  gpt2.n_layer = 4, gpt2.block_size = 128;
  GPTConfig llama = gpt_preset("llama-tiny");
  llama.n_layer = 4, llama.vocab_size = 1000;
  struct Pipe {
    int pp, v;
    ScheduleKind kind;
  };
  const Pipe pipes[] = {{1, 1, ScheduleKind::OneFOneB}, {2, 1, ScheduleKind::GPipe}, {2, 1, ScheduleKind::OneFOneB},
                        {2, 2, ScheduleKind::Interleaved}, {2, 1, ScheduleKind::ZeroBubbleH1},
                        {4, 1, ScheduleKind::OneFOneB}};
  int checked = 0;
  for (const GPTConfig& g : {gpt2, llama})
    for (int tp : {1, 2})
      for (bool sp : {false, true}) {
        if (sp && tp == 1) continue;
        for (const Pipe& pipe : pipes)
          for (int dp : {1, 2})
            for (bool zero1 : {false, true}) {
              if (zero1 && dp == 1) continue;
              for (Recompute r : {Recompute::None, Recompute::Selective, Recompute::Full}) {
                if (pipe.kind == ScheduleKind::ZeroBubbleH1 && r != Recompute::None) continue;
                for (DType act : {DType::F32, DType::BF16}) {
                  Cluster c = cluster_preset(act == DType::F32 ? "local" : "h100-sxm");
                  c.gpus = tp * pipe.pp * dp;
                  Layout L;
                  L.tp = tp, L.pp = pipe.pp, L.virtual_stages = pipe.v, L.dp = dp, L.schedule = pipe.kind;
                  L.micro_batch = 2, L.global_batch = 2 * 4 * dp;  // 4 micro-batches per pipeline
                  L.recompute = r, L.zero1 = zero1, L.act = act, L.sequence_parallel = sp;
                  const Prediction p = predict(ModelShape::from_gpt(g, 128), c, L);
                  parallel::MemoryLayout ml;
                  ml.tp = tp, ml.pp = pipe.pp, ml.dp = dp, ml.sp = sp, ml.zero1 = zero1, ml.schedule = pipe.kind;
                  ml.virtual_stages = pipe.v, ml.micro_batches = 4;
                  size_t most = 0;
                  for (int stage = 0; stage < pipe.pp; ++stage)
                    most = std::max(most, plan_memory(g, 2, 128, r, zero1 ? dp : 1, act, c.device, tp,
                                                      parallel::pipeline_plan_stage(g, 128, ml, stage), sp)
                                              .total());
                  EXPECT_EQ(size_t(p.memory.total()), most)
                      << family_name(g.family) << " tp " << tp << " sp " << sp << " pp " << pipe.pp << " v "
                      << pipe.v << " schedule " << int(pipe.kind) << " dp " << dp << " zero1 " << zero1;
                  ++checked;
                }
              }
            }
      }
  EXPECT_GT(checked, 200);
}

TEST(PerfModel, LayoutsPretrainRefusesNameTheKey) {
  Cluster c = cluster_preset("local");
  c.gpus = 2;
  Layout L;
  L.tp = 2, L.global_batch = 4, L.micro_batch = 1;
  ModelShape llama = ModelShape::from_gpt(gpt_preset("llama-tiny"), 128);
  L.sequence_parallel = true;
  EXPECT_EQ(error_of([&] { predict(llama, c, L); }), "");
  Layout odd = L;
  odd.micro_batch = 1;
  ModelShape short_seq = llama;
  short_seq.seq_len = 127;  // 1 x 127 rows do not split over 2 TP ranks
  EXPECT_NE(error_of([&] { predict(short_seq, c, odd); }).find("'parallel.sequence_parallel'"), std::string::npos);
  llama.n_kv_head = 1;  // 4 query heads on one kv head: no whole kv head per TP rank
  EXPECT_NE(error_of([&] { predict(llama, c, L); }).find("'model.n_kv_head'"), std::string::npos);
  Layout z;
  z.pp = 2, z.global_batch = 4, z.schedule = parallel::pipeline::ScheduleKind::ZeroBubbleH1;
  z.recompute = Recompute::Full;
  const ModelShape gpt2 = ModelShape::from_gpt(gpt_preset("tiny"), 64);
  EXPECT_NE(error_of([&] { predict(gpt2, c, z); }).find("'parallel.schedule'"), std::string::npos);
}

// The exposed gradient reduction by hand: a ring all-reduce of G bytes over d ranks takes
// 2(d−1)/d·G/bw + 2(d−1)·latency; with k buckets at most (k−1)/k of it can hide behind
// backward (the last bucket starts when backward ends), of which dp_overlap does; ZeRO-1's
// all-gather half (after the update) hides only by param_gather_overlap.
TEST(PerfModel, ExposedGradientReductionFollowsTheBuckets) {
  GPTConfig g = gpt_preset("gpt2-124M");
  const ModelShape m = ModelShape::from_gpt(g, 256);
  Cluster c = cluster_preset("local");
  c.gpus = 2, c.gpus_per_node = 2, c.intra_node_bw = 1e9, c.intra_node_latency = 1e-4;
  Layout L;
  L.dp = 2, L.micro_batch = 1, L.global_batch = 2, L.act = DType::F32, L.dp_overlap = 0.5;
  // fp32 gradients of the parameters; the model counts the first stage's, all but the
  // final LayerNorm's 2C (1.2e-5 of them), hence the tolerance below.
  const double G = 4.0 * g.num_params();
  const double allreduce = 2.0 * 1 / 2 * G / 1e9 + 2 * 1 * 1e-4;
  L.bucket_mb = 1e4;  // one bucket: nothing hides
  EXPECT_NEAR(predict(m, c, L).dp_comm / allreduce, 1.0, 2e-5);
  L.bucket_mb = 100;  // G = 498 MB: k = ceil(G / 100 MiB) = 5
  const double k = std::ceil(G / (100.0 * 1024 * 1024));
  ASSERT_EQ(k, 5.0);
  EXPECT_NEAR(predict(m, c, L).dp_comm / (allreduce * (1 - 0.5 * 4 / 5)), 1.0, 2e-5);
  L.zero1 = true;  // reduce-scatter hides like the all-reduce; the all-gather waits
  EXPECT_NEAR(predict(m, c, L).dp_comm / (allreduce / 2 * (1 - 0.5 * 4 / 5) + allreduce / 2), 1.0, 2e-5);
  L.param_gather_overlap = 0.5;
  EXPECT_NEAR(predict(m, c, L).dp_comm / (allreduce / 2 * (1 - 0.5 * 4 / 5) + allreduce / 2 * 0.5), 1.0, 2e-5);
}

// Node contention slows the compute of ranks that share a node, and nothing else: one
// rank alone, or one rank per node, computes at its own speed.
TEST(PerfModel, NodeContentionSlowsRanksSharingANode) {
  const ModelShape m = ModelShape::from_gpt(gpt_preset("tiny"), 64);
  Cluster c = cluster_preset("local");
  Layout L;
  L.micro_batch = 4, L.act = DType::F32;
  auto at = [&](int dp, int per_node, double contention) {
    Cluster k = c;
    k.gpus = dp, k.gpus_per_node = per_node, k.node_contention = contention;
    Layout l = L;
    l.dp = dp, l.global_batch = 4 * dp;
    return predict(m, k, l);
  };
  const Prediction alone = at(1, 2, 1.3), shared = at(2, 2, 1.3), plain = at(2, 2, 1.0), spread = at(2, 1, 1.3);
  EXPECT_DOUBLE_EQ(alone.compute, at(1, 2, 1.0).compute);
  EXPECT_NEAR(shared.compute / plain.compute, 1.3, 1e-12);
  EXPECT_NEAR(shared.memory_ops / plain.memory_ops, 1.3, 1e-12);
  EXPECT_NEAR(shared.optimizer / plain.optimizer, 1.3, 1e-12);
  EXPECT_DOUBLE_EQ(shared.dp_comm, plain.dp_comm);
  EXPECT_DOUBLE_EQ(spread.compute, at(2, 1, 1.0).compute);
}

TEST(PerfModel, ExpertParallelism) {
  // 8 experts, top-2: experts are spread over ep ranks (fewer parameters per device) and
  // the dispatch costs all-to-all time.
  ModelShape m;
  m.n_experts = 8, m.top_k = 2;
  Cluster c = cluster_preset("h100-sxm");
  c.gpus = 8;
  Layout L;
  L.dp = 8, L.global_batch = 64;
  const Prediction one = predict(m, c, L);
  L.ep = 4;
  const Prediction four = predict(m, c, L);
  EXPECT_EQ(one.ep_comm, 0.0);
  EXPECT_GT(four.ep_comm, 0.0);
  EXPECT_LT(four.memory.params, one.memory.params);
  EXPECT_DOUBLE_EQ(four.model_flops, one.model_flops);
  L.ep = 3;  // does not divide dp = 8
  EXPECT_NE(error_of([&] { predict(m, c, L); }).find("'parallel.ep'"), std::string::npos);
}

TEST(PerfModel, BadLayoutsNameTheKey) {
  ModelShape m;  // 12 layers, 12 heads
  Cluster c = cluster_preset("h100-sxm");
  c.gpus = 8;
  auto err = [&](Layout L) { return error_of([&] { predict(m, c, L); }); };
  Layout L;
  L.dp = 8, L.global_batch = 8;
  EXPECT_EQ(err(L), "");
  Layout a = L;
  a.dp = 4;  // 1·1·4 ≠ 8
  EXPECT_NE(err(a).find("'cluster.gpus'"), std::string::npos) << err(a);
  Layout b = L;
  b.tp = 8, b.dp = 1;  // 12 heads % 8
  EXPECT_NE(err(b).find("'parallel.tp'"), std::string::npos) << err(b);
  Layout d = L;
  d.pp = 8, d.dp = 1;  // 12 layers % 8
  EXPECT_NE(err(d).find("'parallel.pp'"), std::string::npos) << err(d);
  Layout e = L;
  e.pp = 2, e.dp = 4, e.virtual_stages = 4;  // 12 % (2·4)
  EXPECT_NE(err(e).find("'parallel.virtual_stages'"), std::string::npos) << err(e);
  Layout f = L;
  f.global_batch = 12;  // not a multiple of dp·b = 8
  EXPECT_NE(err(f).find("'train.global_batch'"), std::string::npos) << err(f);
  EXPECT_NE(error_of([] { cluster_preset("tpu"); }).find("'cluster.preset'"), std::string::npos);
}

}  // namespace
}  // namespace gpt::perf

namespace gpt::perf {
namespace {

// Per-collective costs by hand on a made-up node: 1 GB/s and 100 us per ring step for every
// kind, except reduce-scatter, measured at 0.5 GB/s and 10 us up to 16 MB and 0.25 GB/s
// with no latency from there (a large-message regime).
TEST(PerfModel, EachCollectiveTakesItsOwnKindsCost) {
  Cluster c = cluster_preset("local");
  c.gpus = 2, c.gpus_per_node = 2, c.intra_node_bw = 1e9, c.intra_node_latency = 1e-4;
  c.inter_node_bw = 2e9, c.inter_node_latency = 1e-3;  // 1 GB/s per device across nodes
  CollectiveCost& rs = c.intra_collective[int(Collective::ReduceScatter)];
  rs.bw = 0.5e9, rs.latency = 1e-5, rs.large_from = 16e6, rs.large_bw = 0.25e9, rs.large_latency = 0;
  // Reduce-scatter of an 8 MB message over 2 ranks: half of it per rank, 1 ring step.
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::ReduceScatter, 8e6, 2, true), 4e6 / 0.5e9 + 1e-5);
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::ReduceScatter, 20e6, 2, true), 10e6 / 0.25e9);
  // The call's size picks the regime: 20 MB moved in 8 MB calls stays in the small one.
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::ReduceScatter, 20e6, 2, true, 8e6), 10e6 / 0.5e9 + 1e-5);
  // Kinds without their own cost use the node's figure: all-gather (n−1)/n, all-reduce
  // 2(n−1)/n bytes and 2(n−1) steps, send/recv the whole message and one step.
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::AllGather, 8e6, 2, true), 4e6 / 1e9 + 1e-4);
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::AllReduce, 8e6, 4, true), 1.5 * 8e6 / 1e9 + 6 * 1e-4);
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::SendRecv, 1e6, 2, true), 1e6 / 1e9 + 1e-4);
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::AllToAll, 8e6, 4, true), 0.75 * 8e6 / 1e9 + 3 * 1e-4);
  // Across nodes the per-kind costs do not apply.
  EXPECT_DOUBLE_EQ(collective_time(c, Collective::ReduceScatter, 8e6, 2, false), 4e6 / 1e9 + 1e-3);
  EXPECT_EQ(collective_time(c, Collective::ReduceScatter, 8e6, 1, true), 0.0);

  // ZeRO-1 in predict: one bucket's reduce-scatter of the fp32 gradients at reduce-scatter's
  // cost, the all-gather of the values at all-gather's; plain DP an all-reduce.
  GPTConfig g = gpt_preset("gpt2-124M");
  const ModelShape m = ModelShape::from_gpt(g, 256);
  Layout L;
  L.dp = 2, L.micro_batch = 1, L.global_batch = 2, L.act = DType::F32, L.bucket_mb = 1e4;
  const double G = 4.0 * g.num_params();  // ~498 MB: the large regime
  EXPECT_NEAR(predict(m, c, L).dp_comm / (G / 1e9 + 2e-4), 1.0, 2e-5);
  L.zero1 = true;
  EXPECT_NEAR(predict(m, c, L).dp_comm / (G / 2 / 0.25e9 + (G / 2 / 1e9 + 1e-4)), 1.0, 2e-5);
}

}  // namespace
}  // namespace gpt::perf
