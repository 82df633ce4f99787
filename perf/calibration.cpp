#include "perf/calibration.h"

#include <cmath>

#include "core/checkpoint/json_lite.h"
#include "core/error.h"

namespace gpt::perf {

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

void apply_calibration_json(Cluster& c, const std::string& json_text, const std::string& what) {
  const json::Value doc = json::parse(json_text, what);
  const json::Value* cal = doc.find("calibration");
  GPT_CHECK(cal && cal->is_object(), what + ": no \"calibration\" object; write one with "
                                            "benchmarks/scaling_bench.py or comm_bench --json");
  for (const auto& [key, v] : cal->members) {
    const bool latency = key == "intra_latency_us" || key == "inter_latency_us";
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
    else
      fail(what + ": unknown calibration key '" + key + "' (known: intra_gbps intra_latency_us inter_gbps "
           "inter_latency_us peak_tflops hbm_gbps gemm_efficiency memory_traffic node_contention)");
  }
}

}  // namespace gpt::perf
