// The performance model's formulas against values computed by hand, the memory model
// against pretrain's own plan, and bad layouts.
#include <gtest/gtest.h>

#include "core/model/memory_plan.h"
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
