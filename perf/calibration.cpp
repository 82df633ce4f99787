#include "perf/calibration.h"

#include <algorithm>
#include <cmath>

#include "core/checkpoint/json_lite.h"
#include "core/error.h"

namespace gpt::perf {

namespace {

// "OP_FIELD" for a collective OP sets that kind's CollectiveCost field; false if no such key.
bool apply_collective_key(Cluster& c, const std::string& key, double x) {
  for (int k = 0; k < kCollectives; ++k) {
    const std::string op = collective_name(Collective(k));
    if (key.compare(0, op.size() + 1, op + "_") != 0) continue;
    const std::string field = key.substr(op.size() + 1);
    CollectiveCost& own = c.intra_collective[k];
    if (field == "gbps") own.bw = x * 1e9;
    else if (field == "latency_us") own.latency = x * 1e-6;
    else if (field == "large_from_mb") own.large_from = x * 1e6;
    else if (field == "large_gbps") own.large_bw = x * 1e9;
    else if (field == "large_latency_us") own.large_latency = x * 1e-6;
    else continue;
    return true;
  }
  return false;
}

}  // namespace

double bus_bandwidth_factor(const std::string& op, int n) {
  GPT_CHECK(n >= 1, "bus_bandwidth_factor: group size must be positive, got " + std::to_string(n));
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "reduce_scatter" || op == "allgather" || op == "all_to_all") return double(n - 1) / n;
  if (op == "sendrecv") return 1.0;
  fail("bus_bandwidth_factor: unknown operation '" + op +
       "' (known: allreduce reduce_scatter allgather all_to_all sendrecv)");
}

LatencyBandwidth fit_latency_bandwidth(const std::vector<double>& x, const std::vector<double>& t,
                                       int steps) {
  GPT_CHECK(x.size() == t.size() && x.size() >= 2 && steps > 0,
            "fit_latency_bandwidth: needs at least two (bytes, seconds) points and positive steps");
  // Weighted least squares of t = a + b·x with weights w = 1/t²: the 2×2 normal equations.
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    GPT_CHECK(t[i] > 0, "fit_latency_bandwidth: times must be positive");
    const double w = 1.0 / (t[i] * t[i]);
    sw += w, sx += w * x[i], sy += w * t[i], sxx += w * x[i] * x[i], sxy += w * x[i] * t[i];
  }
  const double det = sw * sxx - sx * sx;
  GPT_CHECK(det > 0, "fit_latency_bandwidth: the message sizes must differ");
  double a = (sxx * sy - sx * sxy) / det, b = (sw * sxy - sx * sy) / det;
  if (a < 0) a = 0, b = sxy / sxx;  // through the origin
  GPT_CHECK(b > 0, "fit_latency_bandwidth: time does not grow with size; no bandwidth to fit");
  return {a / steps, 1.0 / b};
}

CollectiveCost fit_collective(const std::string& op, const std::vector<double>& message_bytes,
                              const std::vector<double>& seconds, int n) {
  GPT_CHECK(message_bytes.size() == seconds.size(), "fit_collective: sizes and times differ in count");
  GPT_CHECK(n >= 2, "fit_collective: needs a group of 2 or more ranks, got " + std::to_string(n));
  const double factor = bus_bandwidth_factor(op, n);
  const int steps = op == "allreduce" ? 2 * (n - 1) : op == "sendrecv" ? 1 : n - 1;
  std::vector<size_t> order(message_bytes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return message_bytes[a] < message_bytes[b]; });
  std::vector<double> x, t;
  for (size_t i : order) x.push_back(message_bytes[i]), t.push_back(seconds[i]);
  size_t split = x.size();
  for (size_t i = 2; i + 2 <= x.size() && split == x.size(); ++i) {
    const double before = t[i - 1] / x[i - 1];
    bool all_slower = true;
    for (size_t j = i; j < x.size(); ++j) all_slower = all_slower && t[j] / x[j] > 1.5 * before;
    if (all_slower) split = i;
  }
  auto fit = [&](size_t lo, size_t hi) {
    std::vector<double> xs, ts;
    for (size_t i = lo; i < hi; ++i) xs.push_back(x[i] * factor), ts.push_back(t[i]);
    return fit_latency_bandwidth(xs, ts, steps);
  };
  CollectiveCost c;
  const LatencyBandwidth small = fit(0, split);
  c.bw = small.bandwidth, c.latency = small.latency_s;
  if (split < x.size()) {
    const LatencyBandwidth large = fit(split, x.size());
    c.large_from = x[split], c.large_bw = large.bandwidth, c.large_latency = large.latency_s;
  }
  return c;
}

void apply_calibration_json(Cluster& c, const std::string& json_text, const std::string& what) {
  const json::Value doc = json::parse(json_text, what);
  const json::Value* cal = doc.find("calibration");
  GPT_CHECK(cal && cal->is_object(), what + ": no \"calibration\" object; write one with "
                                            "benchmarks/scaling_bench.py or comm_bench --json");
  for (const auto& member : cal->members) {
    // Named, not a structured binding: a lambda may not capture one before C++20 (clang).
    const std::string& key = member.first;
    const json::Value& v = member.second;
    const auto ends = [&](const std::string& suffix) {
      return key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool latency = ends("_latency_us");
    GPT_CHECK(v.is_number() && std::isfinite(v.number) && (v.number > 0 || (latency && v.number == 0)),
              what + ": calibration key '" + key + "' must be a " + (latency ? "non-negative" : "positive") +
                  " number");
    const double x = v.number;
    if (key == "intra_gbps") c.intra_node_bw = x * 1e9;
    else if (key == "inter_gbps") c.inter_node_bw = x * 1e9;
    else if (key == "intra_latency_us") c.intra_node_latency = x * 1e-6;
    else if (key == "inter_latency_us") c.inter_node_latency = x * 1e-6;
    else if (key == "peak_tflops") c.peak_flops = x * 1e12;
    else if (key == "hbm_gbps") c.hbm_bw = x * 1e9;
    else if (key == "gemm_efficiency") c.gemm_efficiency = x;
    else if (key == "memory_traffic") c.memory_traffic = x;
    else if (key == "node_contention") c.node_contention = x;
    else if (!apply_collective_key(c, key, x))
      fail(what + ": unknown calibration key '" + key + "' (known: intra_gbps intra_latency_us inter_gbps "
           "inter_latency_us peak_tflops hbm_gbps gemm_efficiency memory_traffic node_contention, and OP_gbps "
           "OP_latency_us OP_large_from_mb OP_large_gbps OP_large_latency_us for OP allreduce reduce_scatter "
           "allgather all_to_all sendrecv)");
  }
}

}  // namespace gpt::perf
