// perf/calibration.h without any timing: the bus-bandwidth factors, the latency-bandwidth
// fit on synthetic points, and the calibration JSON reader `plan --cluster.from_json` uses.
#include <gtest/gtest.h>

#include "perf/calibration.h"
#include "tests/support/error_of.h"

namespace gpt::perf {
namespace {

TEST(Calibration, BusBandwidthFactorsFollowNcclTests) {
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("allreduce", 2), 1.0);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("allreduce", 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("reduce_scatter", 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("allgather", 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("all_to_all", 2), 0.5);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("sendrecv", 2), 1.0);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor("allreduce", 1), 0.0);
  EXPECT_NE(error_of([] { bus_bandwidth_factor("gather", 2); }).find("unknown operation 'gather'"), std::string::npos);
}

TEST(Calibration, FitRecoversLatencyAndBandwidthOfARing) {
  // t = steps·5 µs + bytes / 2 GB/s, 1 KiB to 64 MiB, steps = 2(n−1) = 6 for n = 4.
  std::vector<double> x, t;
  for (double b = 1024; b <= 64.0 * 1024 * 1024; b *= 4) x.push_back(b), t.push_back(6 * 5e-6 + b / 2e9);
  const LatencyBandwidth f = fit_latency_bandwidth(x, t, 6);
  EXPECT_NEAR(f.latency_s, 5e-6, 1e-12);
  EXPECT_NEAR(f.bandwidth, 2e9, 1e-3);
}

TEST(Calibration, FitClampsANegativeLatencyToZero) {
  // Points on a line through a negative intercept: latency 0, bandwidth through the origin.
  const std::vector<double> x = {1e6, 2e6}, t = {0.5e-3, 1.5e-3};
  const LatencyBandwidth f = fit_latency_bandwidth(x, t, 2);
  EXPECT_EQ(f.latency_s, 0.0);
  EXPECT_GT(f.bandwidth, 0.0);
  EXPECT_NE(error_of([] { fit_latency_bandwidth({1e6}, {1e-3}, 2); }).find("two"), std::string::npos);
}

TEST(Calibration, JsonOverridesOnlyTheKeysItNames) {
  Cluster c = cluster_preset("local");
  const Cluster before = c;
  apply_calibration_json(c, R"({"bench": "comm_bench", "calibration": {"intra_gbps": 0.5, "intra_latency_us": 0,
                                "peak_tflops": 0.1, "gemm_efficiency": 0.4, "node_contention": 1.25}})", "test");
  EXPECT_DOUBLE_EQ(c.node_contention, 1.25);
  EXPECT_DOUBLE_EQ(c.intra_node_bw, 0.5e9);
  EXPECT_DOUBLE_EQ(c.intra_node_latency, 0.0);
  EXPECT_DOUBLE_EQ(c.peak_flops, 0.1e12);
  EXPECT_DOUBLE_EQ(c.gemm_efficiency, 0.4);
  EXPECT_DOUBLE_EQ(c.hbm_bw, before.hbm_bw);  // not named: the preset's
  EXPECT_DOUBLE_EQ(c.inter_node_bw, before.inter_node_bw);
  EXPECT_DOUBLE_EQ(c.memory_traffic, before.memory_traffic);
}

TEST(Calibration, JsonErrorsNameTheKey) {
  Cluster c = cluster_preset("local");
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": null})", "f.json"); })
                .find("f.json: no \"calibration\" object"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": {"intra_gbs": 1}})", "f.json"); })
                .find("unknown calibration key 'intra_gbs'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": {"peak_tflops": 0}})", "f.json"); })
                .find("'peak_tflops' must be a positive number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": {"hbm_gbps": "fast"}})", "f.json"); })
                .find("'hbm_gbps'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_calibration_json(c, "{", "f.json"); }).find("f.json"), std::string::npos);
}

}  // namespace
}  // namespace gpt::perf

namespace gpt::perf {
namespace {

TEST(Calibration, JsonSetsEachCollectivesCost) {
  Cluster c = cluster_preset("local");
  const double intra = c.intra_node_bw;
  apply_calibration_json(c, R"({"calibration": {"reduce_scatter_gbps": 0.25, "reduce_scatter_latency_us": 400,
      "reduce_scatter_large_from_mb": 16.777216, "reduce_scatter_large_gbps": 0.125, "reduce_scatter_large_latency_us": 0,
      "sendrecv_gbps": 0.75, "sendrecv_latency_us": 0, "all_to_all_gbps": 0.5, "allgather_gbps": 0.7,
      "allreduce_gbps": 0.35}})",
                         "f.json");
  const CollectiveCost& rs = c.intra_collective[int(Collective::ReduceScatter)];
  EXPECT_DOUBLE_EQ(rs.bw, 0.25e9);
  EXPECT_DOUBLE_EQ(rs.latency, 400e-6);
  EXPECT_DOUBLE_EQ(rs.large_from, 16.777216e6);
  EXPECT_DOUBLE_EQ(rs.large_bw, 0.125e9);
  EXPECT_DOUBLE_EQ(c.intra_collective[int(Collective::SendRecv)].bw, 0.75e9);
  EXPECT_DOUBLE_EQ(c.intra_collective[int(Collective::AllToAll)].bw, 0.5e9);
  EXPECT_DOUBLE_EQ(c.intra_collective[int(Collective::AllGather)].bw, 0.7e9);
  EXPECT_DOUBLE_EQ(c.intra_collective[int(Collective::AllReduce)].bw, 0.35e9);
  EXPECT_EQ(c.intra_node_bw, intra);  // the node's figure stays for the kinds' fallback
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": {"allgather_speed": 1}})", "f.json"); })
                .find("'allgather_speed'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { apply_calibration_json(c, R"({"calibration": {"sendrecv_gbps": 0}})", "f.json"); })
                .find("'sendrecv_gbps'"),
            std::string::npos);
}

// Two regimes by hand: reduce-scatter over 2 ranks at 0.5 GB/s and 100 us per step up to
// 8 MiB messages, then 0.2 GB/s with no latency; the fit finds the break and both lines.
TEST(Calibration, FitCollectiveFindsTheLargeMessageRegime) {
  std::vector<double> bytes, secs;
  for (double b = 1 << 20; b <= 64.0 * (1 << 20); b *= 2)
    bytes.push_back(b), secs.push_back(b <= 8.0 * (1 << 20) ? b / 2 / 0.5e9 + 1e-4 : b / 2 / 0.2e9);
  const CollectiveCost f = fit_collective("reduce_scatter", bytes, secs, 2);
  EXPECT_NEAR(f.bw, 0.5e9, 1e3);
  EXPECT_NEAR(f.latency, 1e-4, 1e-9);
  EXPECT_DOUBLE_EQ(f.large_from, 16.0 * (1 << 20));
  EXPECT_NEAR(f.large_bw, 0.2e9, 1e3);
  EXPECT_NEAR(f.large_latency, 0, 1e-9);
  // One regime: no break.
  std::vector<double> one;
  for (double b : bytes) one.push_back(2 * 3.0 / 4 * b / 1e9 + 6 * 5e-6);  // all-reduce over 4 ranks
  const CollectiveCost g = fit_collective("allreduce", bytes, one, 4);
  EXPECT_NEAR(g.bw, 1e9, 1e3);
  EXPECT_NEAR(g.latency, 5e-6, 1e-10);
  EXPECT_EQ(g.large_from, 0.0);
}

}  // namespace
}  // namespace gpt::perf
