#include "perf/report.h"

#include <cstdarg>
#include <cstdio>

#include "core/error.h"

namespace gpt::perf {

namespace {
constexpr double GiB = 1024.0 * 1024.0 * 1024.0;

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}
}  // namespace

const char* recompute_name(Recompute r) {
  return r == Recompute::None ? "none" : r == Recompute::Selective ? "selective" : "full";
}

std::string describe_layout(const Layout& L) {
  return fmt("tp %d pp %d v %d dp %d ep %d b %d recompute %s zero1 %s", L.tp, L.pp, L.virtual_stages, L.dp,
             L.ep, L.micro_batch, recompute_name(L.recompute), L.zero1 ? "on" : "off");
}

std::string describe_prediction(const ModelShape& m, const Cluster& c, const Layout& L, const Prediction& p) {
  std::string o;
  o += fmt("model: %d layers, hidden %d, %d heads, seq %d, vocab %d: %.3g B parameters\n", m.n_layer, m.n_embd,
           m.n_head, m.seq_len, m.vocab_size, m.num_params() / 1e9);
  o += fmt("cluster: %s, %d devices (%d per node), %.0f TFLOP/s peak, %.0f GB each\n", c.name.c_str(), c.gpus,
           c.gpus_per_node, c.peak_flops / 1e12, c.memory_bytes / 1e9);
  o += fmt("layout: %s, global batch %d (%d micro-batches per pipeline)\n", describe_layout(L).c_str(),
           L.global_batch, L.micro_batches());
  auto row = [&](const char* name, double s) {
    o += fmt("  %-22s %10.4f s  %5.1f%%\n", name, s, p.step > 0 ? 100 * s / p.step : 0);
  };
  o += "step time per device:\n";
  row("compute (GEMMs)", p.compute);
  row("memory-bound ops", p.memory_ops);
  row("TP communication", p.tp_comm);
  row("EP all-to-all", p.ep_comm);
  row("PP send/recv", p.pp_p2p);
  row("pipeline bubble", p.bubble);
  row("DP grads (exposed)", p.dp_comm);
  row("optimizer", p.optimizer);
  o += fmt("  %-22s %10.4f s  (bubble fraction %.1f%%)\n", "step", p.step, 100 * p.bubble_fraction);
  const MemoryBreakdown& mem = p.memory;
  o += fmt("memory per device: params %.2f + grads %.2f + optimizer %.2f + activations %.2f + workspace %.2f = "
           "%.2f GiB of %.2f GiB: %s (%.0f bytes%s)\n",
           mem.params / GiB, mem.grads / GiB, mem.optimizer / GiB, mem.activations / GiB, mem.workspace / GiB,
           mem.total() / GiB, c.memory_bytes / GiB, p.fits ? "fits" : "DOES NOT FIT", mem.total(),
           L.pp > 1 ? fmt(" on stage %d", p.memory_stage).c_str() : "");
  o += fmt("throughput: %.1f model TFLOP/s per device (%.1f with recomputation), MFU %.1f%%, %.0f tokens/s\n",
           p.tflops_per_gpu, p.hardware_flops / p.step / c.gpus / 1e12, 100 * p.mfu,
           double(L.global_batch) * m.seq_len / p.step);
  o += "limited by: " + p.limit + "\n";
  return o;
}

std::string prediction_json(const Layout& L, const Prediction& p) {
  return fmt("{\"tflops_per_gpu\":%.4g,\"mfu\":%.4g,\"step_s\":%.6g,\"memory_gib_per_gpu\":%.4g,\"fits\":%s,"
             "\"tp\":%d,\"pp\":%d,\"virtual_stages\":%d,\"dp\":%d,\"ep\":%d,\"micro_batch\":%d,"
             "\"global_batch\":%d,\"recompute\":\"%s\",\"zero1\":%s,\"compute_s\":%.6g,\"memory_ops_s\":%.6g,"
             "\"tp_comm_s\":%.6g,\"ep_comm_s\":%.6g,\"pp_p2p_s\":%.6g,\"bubble_s\":%.6g,\"dp_comm_s\":%.6g,"
             "\"optimizer_s\":%.6g,\"bubble_fraction\":%.4g,\"memory_bytes_per_gpu\":%.0f,\"memory_stage\":%d}",
             p.tflops_per_gpu, p.mfu, p.step, p.memory.total() / GiB, p.fits ? "true" : "false", L.tp, L.pp,
             L.virtual_stages, L.dp, L.ep, L.micro_batch, L.global_batch, recompute_name(L.recompute),
             L.zero1 ? "true" : "false", p.compute, p.memory_ops, p.tp_comm, p.ep_comm, p.pp_p2p, p.bubble,
             p.dp_comm, p.optimizer, p.bubble_fraction, p.memory.total(), p.memory_stage);
}

std::string describe_validation(const std::vector<TableCheck>& checks) {
  std::string o;
  for (const TableCheck& tc : checks) {
    const PublishedTable& t = *tc.table;
    const Cluster c = cluster_preset(t.cluster);
    o += fmt("\n%s (%s)\n", t.source.c_str(), t.paper_flops ? "TFLOP/s by eq. (3), recomputation counted"
                                                            : "model TFLOP/s");
    o += "assumed: " + t.assumptions + "\n";
    o += fmt("cluster %s: gemm_efficiency %.2f, memory_traffic %.2f (calibrated on the rows marked 'cal')\n",
             t.cluster.c_str(), c.gemm_efficiency, c.memory_traffic);
    o += "  model    tp  pp  v   GPUs  batch  b | published  predicted   error | bubble  comm   GiB/dev  row\n";
    for (const RowCheck& rc : tc.rows) {
      const PublishedRow& r = *rc.row;
      const Prediction& p = rc.prediction;
      const double comm = (p.tp_comm + p.pp_p2p + p.dp_comm) / p.step;
      o += fmt("  %-7s %3d %3d %2d %6d %6d %2d | %9.1f %10.1f %+6.1f%% | %5.1f%% %5.1f%%  %7.1f  %s\n", r.name, r.tp,
               r.pp, r.virtual_stages, r.gpus, r.batch, r.micro_batch, r.tflops_per_gpu, rc.predicted, 100 * rc.error,
               100 * p.bubble_fraction, 100 * comm, p.memory.total() / GiB, r.calibration ? "cal" : "held out");
    }
    o += fmt("  max |error| %.1f%% (held-out rows %.1f%%)\n", 100 * tc.max_abs_error,
             100 * tc.max_abs_error_held_out);
  }
  return o;
}

std::string describe_search(const std::vector<Candidate>& best, const Cluster& c) {
  std::string o = "  #  layout                                                       step s  TFLOP/s   MFU   GiB/dev  limited by\n";
  int i = 0;
  for (const Candidate& k : best) {
    const Prediction& p = k.prediction;
    o += fmt("  %-2d %-60s %7.3f %8.1f %5.1f%% %7.1f  %s\n", ++i, describe_layout(k.layout).c_str(), p.step,
             p.tflops_per_gpu, 100 * p.mfu, p.memory.total() / GiB, p.limit.c_str());
  }
  if (best.empty()) o += "  no layout fits in memory\n";
  return o;
}

PlannerSanity planner_sanity() {
  PlannerSanity s;
  const std::vector<PublishedTable> tables = published_tables();
  const PublishedTable& t = tables[0];
  const PublishedRow* row = nullptr;
  for (const PublishedRow& r : t.rows)
    if (std::string(r.name) == "145.6B") row = &r;
  GPT_CHECK(row, "the 145.6B row is missing from the published tables");
  const ModelShape m = row_model(t, *row);
  const Cluster c = row_cluster(t, *row);
  const Layout L = row_layout(t, *row);
  s.published = predict(m, c, L);
  auto best = search_layouts(m, c, L, 1 << 30);
  GPT_CHECK(!best.empty(), "no layout of the 145.6B model fits on 1536 A100s");
  s.best_145b = best[0];
  for (const Candidate& k : best)
    if (k.layout.recompute == Recompute::Full) {
      s.best_145b_full = k;
      break;
    }

  ModelShape g = ModelShape::from_gpt(gpt_preset("gpt2-1.5B"), 1024);
  Cluster h = cluster_preset("h100-sxm");
  h.gpus = 8;
  Layout base;
  base.global_batch = 512;
  base.zero1 = true;
  auto gb = search_layouts(g, h, base, 1);
  GPT_CHECK(!gb.empty(), "no layout of GPT-2 1.5B fits on 8 H100s");
  s.best_gpt2 = gb[0];
  return s;
}

std::string describe_sanity(const PlannerSanity& s) {
  std::string o = "\nplanner sanity: 145.6B (Narayanan et al. Table 1) on 1536 A100-80GB, batch 2304\n";
  o += fmt("  published layout: tp 8 pp 8 v 2 b 2 full recompute: step %.2f s, %.1f model TFLOP/s, %.1f GiB\n",
           s.published.step, s.published.tflops_per_gpu, s.published.memory.total() / GiB);
  const Prediction& b = s.best_145b.prediction;
  o += fmt("  planner's best:   %s: step %.2f s, %.1f model TFLOP/s, %.1f GiB, %s (%.2fx the published layout)\n",
           describe_layout(s.best_145b.layout).c_str(), b.step, b.tflops_per_gpu, b.memory.total() / GiB,
           b.fits ? "fits" : "does not fit", s.published.step / b.step);
  const Prediction& f = s.best_145b_full.prediction;
  o += fmt("  best with full recomputation as published: %s: step %.2f s, %.1f GiB (%.2fx)\n",
           describe_layout(s.best_145b_full.layout).c_str(), f.step, f.memory.total() / GiB,
           s.published.step / f.step);
  o += fmt("  why: the published run recomputed every layer (selective recomputation came a year later,\n"
           "  Korthikanti et al. 2022), which costs a third more compute; with full recomputation kept, the gain\n"
           "  is the bubble (%.1f%% vs %.1f%%) and TP traffic per FLOP (tp %d vs 8: TP %.2f s vs %.2f s). The model\n"
           "  does not charge small micro-batches for less efficient GEMMs, so the real gain is likely smaller.\n",
           100 * f.bubble_fraction, 100 * s.published.bubble_fraction, s.best_145b_full.layout.tp, f.tp_comm,
           s.published.tp_comm);
  const Prediction& g = s.best_gpt2.prediction;
  o += fmt("planner: GPT-2 1.5B on 8 H100-SXM, batch 512 x 1024 tokens: %s: step %.3f s, MFU %.1f%%, %.1f GiB\n",
           describe_layout(s.best_gpt2.layout).c_str(), g.step, 100 * g.mfu, g.memory.total() / GiB);
  return o;
}

}  // namespace gpt::perf
