#include "perf/planner.h"

#include <algorithm>

#include "core/error.h"

namespace gpt::perf {

namespace {
thread_local int evaluated = 0;

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}
}  // namespace

int search_layouts_evaluated() { return evaluated; }

std::vector<Candidate> search_layouts(const ModelShape& m, const Cluster& c, const Layout& base, int top) {
  evaluated = 0;
  std::vector<Candidate> fit;
  for (int tp : divisors(c.gpus)) {
    if (c.gpus_per_node % tp != 0 || m.n_head % tp != 0) continue;  // TP groups inside a node
    if ((m.n_kv_head > 0 ? m.n_kv_head : m.n_head) % tp != 0) continue;  // whole kv heads per TP rank
    for (int pp : divisors(c.gpus / tp)) {
      if (m.n_layer % pp != 0) continue;
      const int dp = c.gpus / (tp * pp);
      if (base.global_batch % dp != 0 || dp % base.ep != 0) continue;
      const int per_dp = base.global_batch / dp;
      for (int b : {1, 2, 4, 8, 16, 32}) {
        if (per_dp % b != 0) continue;
        const int mb = per_dp / b;
        for (int v : divisors(m.n_layer / pp)) {
          // Interleaving needs a pipeline and, in Megatron's schedule, m divisible by p.
          if (v > 1 && (pp == 1 || mb % pp != 0 || v > 8)) continue;
          for (Recompute r : {Recompute::None, Recompute::Selective, Recompute::Full}) {
            for (bool z : {false, true}) {
              if (z && dp == 1) continue;
              Layout L = base;
              L.tp = tp, L.pp = pp, L.dp = dp, L.virtual_stages = v, L.micro_batch = b;
              L.recompute = r, L.zero1 = z;
              Prediction p = predict(m, c, L);
              ++evaluated;
              if (p.fits) fit.push_back({L, p});
            }
          }
        }
      }
    }
  }
  std::sort(fit.begin(), fit.end(), [](const Candidate& x, const Candidate& y) {
    if (x.prediction.step != y.prediction.step) return x.prediction.step < y.prediction.step;
    return x.prediction.memory.total() < y.prediction.memory.total();
  });
  // The micro-batch moves the prediction only through the bubble, latencies and memory
  // (the model has no GEMM-shape efficiency): of layouts that differ only in it and
  // predict the same step within 0.1%, keep the fastest (the first after the sort).
  std::vector<Candidate> out;
  for (const Candidate& k : fit) {
    bool dup = false;
    for (const Candidate& o : out) {
      const Layout &a = k.layout, &b = o.layout;
      dup |= a.tp == b.tp && a.pp == b.pp && a.virtual_stages == b.virtual_stages && a.recompute == b.recompute &&
             a.zero1 == b.zero1 && k.prediction.step <= o.prediction.step * 1.001;
    }
    if (!dup) out.push_back(k);
    if (int(out.size()) == top) break;
  }
  return out;
}

}  // namespace gpt::perf
