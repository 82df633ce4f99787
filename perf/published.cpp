// The published tables, transcribed:
//  [1] D. Narayanan et al., "Efficient Large-Scale Language Model Training on GPU
//      Clusters Using Megatron-LM", SC 2021, Table 1 (A100-80GB, 8 per node on NVSwitch,
//      8 × 200 Gb/s HDR InfiniBand per node; s = 2048, V = 51,200; interleaved schedule,
//      activation recomputation; TFLOP/s counted with eq. (3)).
//  [2] NVIDIA Megatron-LM README (github.com/NVIDIA/Megatron-LM), H100 weak-scaling table
//      (s = 4096, V = 131,072; DP, TP and PP communication overlapped; TFLOP/s are model
//      FLOPs, MFU against 989 TFLOP/s). The micro-batch is not given: we take 1.
#include "perf/published.h"

#include <cmath>

namespace gpt::perf {

std::vector<PublishedTable> published_tables() {
  std::vector<PublishedTable> out;

  PublishedTable n;
  n.name = "narayanan2021_table1";
  n.source = "Narayanan et al. 2021 (SC'21), Table 1, A100-80GB";
  n.assumptions =
      "v = layers per device / layers per virtual stage as Table 1 notes them (1008B: none noted, v = 1); "
      "full recomputation, no SP, no flash attention, no TP/DP overlap (2021 Megatron)";
  n.cluster = "a100-80gb", n.seq_len = 2048, n.vocab = 51200, n.paper_flops = true, n.tied_head = true;
  // 2021 Megatron: full recomputation, no sequence parallelism, no flash attention,
  // TP and DP communication not overlapped, fp32 gradient all-reduce.
  n.settings.recompute = Recompute::Full, n.settings.sequence_parallel = false;
  n.settings.flash_attention = false, n.settings.tp_overlap = 0, n.settings.dp_overlap = 0;
  // virtual_stages = (layers / pp) / (layers per virtual stage, as Table 1 notes it).
  n.rows = {
      {"1.7B", 24, 2304, 24, 1, 1, 32, 512, 16, 1, 137, true},
      {"3.6B", 32, 3072, 30, 2, 1, 64, 512, 16, 1, 138, false},
      {"7.5B", 32, 4096, 36, 4, 1, 128, 512, 16, 1, 142, false},
      {"18.4B", 48, 6144, 40, 8, 1, 256, 1024, 8, 1, 135, true},
      {"39.1B", 64, 8192, 48, 8, 2, 512, 1536, 4, 1, 138, false},
      {"76.1B", 80, 10240, 60, 8, 4, 1024, 1792, 2, 3, 140, false},
      {"145.6B", 96, 12288, 80, 8, 8, 1536, 2304, 2, 2, 148, true},
      {"310.1B", 128, 16384, 96, 8, 16, 1920, 2160, 1, 2, 155, false},
      {"529.6B", 128, 20480, 105, 8, 35, 2520, 2520, 1, 3, 163, true},
      {"1008B", 160, 25600, 128, 8, 64, 3072, 3072, 1, 1, 163, false},
  };
  out.push_back(n);

  PublishedTable m;
  m.name = "megatron_h100_weak_scaling";
  m.source = "NVIDIA Megatron-LM README, H100 weak scaling";
  m.assumptions =
      "micro-batch not published: 1 assumed; selective recomputation, SP, flash attention, distributed "
      "optimizer (fp32 master sharded too); "
      "80% of TP and DP traffic hidden by the overlap (assumed, not fitted); untied head";
  m.cluster = "h100-sxm", m.seq_len = 4096, m.vocab = 131072, m.paper_flops = false, m.tied_head = false;
  // Megatron-Core: selective recomputation, SP, flash attention, distributed optimizer,
  // communication overlapped: we take 80% of TP and DP traffic hidden (an assumption,
  // not fitted).
  m.settings.recompute = Recompute::Selective, m.settings.sequence_parallel = true;
  m.settings.flash_attention = true, m.settings.tp_overlap = 0.8, m.settings.dp_overlap = 0.8;
  m.settings.param_gather_overlap = 0.8;  // the distributed optimizer's gather, overlapped alike
  m.settings.zero1 = true, m.settings.shard_master = true;  // the distributed optimizer
  m.rows = {
      {"1.7B", 16, 2048, 24, 1, 1, 48, 192, 1, 1, 408.8, false},
      {"7.1B", 32, 4096, 30, 2, 1, 96, 192, 1, 1, 465.9, true},
      {"16B", 48, 6144, 32, 4, 1, 192, 192, 1, 1, 489.1, false},
      {"32B", 56, 7168, 48, 8, 1, 384, 192, 1, 1, 459.6, false},
      {"70B", 64, 8192, 84, 8, 2, 768, 384, 1, 1, 419.7, true},
      {"119B", 80, 10240, 92, 8, 4, 1536, 768, 1, 1, 420.5, false},
      {"177B", 96, 12288, 96, 8, 6, 2304, 1152, 1, 1, 432.8, false},
      {"314B", 128, 16384, 96, 8, 8, 3072, 1536, 1, 1, 474.4, true},
      {"462B", 144, 18432, 112, 8, 16, 6144, 3072, 1, 1, 459.9, false},
  };
  out.push_back(m);
  return out;
}

ModelShape row_model(const PublishedTable& t, const PublishedRow& r) {
  ModelShape s;
  s.n_layer = r.layers, s.n_head = r.heads, s.n_embd = r.hidden, s.vocab_size = t.vocab, s.seq_len = t.seq_len;
  s.tied_head = t.tied_head;
  return s;
}

Cluster row_cluster(const PublishedTable& t, const PublishedRow& r) {
  Cluster c = cluster_preset(t.cluster);
  c.gpus = r.gpus;
  return c;
}

Layout row_layout(const PublishedTable& t, const PublishedRow& r) {
  Layout L = t.settings;
  L.tp = r.tp, L.pp = r.pp, L.dp = r.gpus / (r.tp * r.pp), L.virtual_stages = r.virtual_stages;
  L.micro_batch = r.micro_batch, L.global_batch = r.batch;
  return L;
}

std::vector<TableCheck> validate(const std::vector<PublishedTable>& tables, const Constants* overrides) {
  std::vector<TableCheck> out;
  for (size_t ti = 0; ti < tables.size(); ++ti) {
    const PublishedTable& t = tables[ti];
    TableCheck tc;
    tc.table = &t;
    for (const PublishedRow& r : t.rows) {
      RowCheck rc;
      rc.row = &r;
      Cluster c = row_cluster(t, r);
      if (overrides) c.gemm_efficiency = overrides->gemm_efficiency[ti], c.memory_traffic = overrides->memory_traffic;
      rc.prediction = predict(row_model(t, r), c, row_layout(t, r));
      // Count FLOPs as the source does: eq. (3) of [1] (= our hardware FLOPs under full
      // recomputation) or model FLOPs.
      const double flops = t.paper_flops ? megatron_paper_flops(r.batch, t.seq_len, r.layers, r.hidden, t.vocab)
                                         : megatron_model_flops(r.batch, t.seq_len, r.layers, r.hidden, t.vocab);
      rc.predicted = flops / rc.prediction.step / r.gpus / 1e12;
      rc.error = (rc.predicted - r.tflops_per_gpu) / r.tflops_per_gpu;
      tc.max_abs_error = std::max(tc.max_abs_error, std::fabs(rc.error));
      if (!r.calibration) tc.max_abs_error_held_out = std::max(tc.max_abs_error_held_out, std::fabs(rc.error));
      tc.rows.push_back(rc);
    }
    out.push_back(tc);
  }
  return out;
}

Calibration calibrate(const std::vector<PublishedTable>& tables) {
  // Least squares of the relative errors on the calibration rows. The tables' accelerators
  // differ, so each gemm_efficiency only moves its own table's errors: for each
  // memory_traffic, the best efficiency per table is found on its own.
  Calibration best;
  double best_sq = 1e30;
  for (int k = 0; k < 30; ++k) {
    Constants c;
    c.memory_traffic = 0.1 * k;
    double worst = 0;
    for (size_t ti = 0; ti < tables.size(); ++ti) {
      double best_e = 1e30, best_eff = 0;
      for (int e = 30; e < 90; ++e) {
        const std::vector<PublishedTable> one(tables.begin() + ti, tables.begin() + ti + 1);
        Constants single{{0.01 * e}, c.memory_traffic};
        double err = 0;
        const std::vector<TableCheck> checks = validate(one, &single);  // outlives the loop
        for (const RowCheck& rc : checks[0].rows)
          if (rc.row->calibration) err += rc.error * rc.error;
        if (err < best_e - 1e-12) best_e = err, best_eff = 0.01 * e;
      }
      c.gemm_efficiency.push_back(best_eff);
      worst += best_e;
    }
    if (worst < best_sq - 1e-15) best_sq = worst, best.constants = c;
  }
  best.max_abs_error_calibration_rows = 0;
  for (const TableCheck& tc : validate(tables, &best.constants))
    for (const RowCheck& rc : tc.rows)
      if (rc.row->calibration)
        best.max_abs_error_calibration_rows = std::max(best.max_abs_error_calibration_rows, std::fabs(rc.error));
  return best;
}

}  // namespace gpt::perf
