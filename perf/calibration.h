// Measured numbers for a cluster preset: the bus-bandwidth factors the communication
// benchmark reports with (as nccl-tests does), the latency-bandwidth fit of its
// all-reduce times, and the reader of the calibration JSON that
// `plan --cluster.from_json FILE` applies on top of a preset.
#pragma once
#include <string>
#include <vector>

#include "perf/perf_model.h"

namespace gpt::perf {

// busbw = algbw × factor, algbw = message bytes / time (nccl-tests' PERFORMANCE.md):
// allreduce 2(n−1)/n; reduce_scatter, allgather, all_to_all (n−1)/n; sendrecv 1.
// The message is the whole buffer (all chunks) for reduce_scatter/allgather/all_to_all.
// Throws naming the operation when it is unknown; n = 1 gives 0 for the collectives.
double bus_bandwidth_factor(const std::string& op, int n);

// Least-squares fit of t = steps·latency + bytes/bandwidth to measured (bytes per rank,
// seconds) points of one ring collective, weighted by 1/t² so that small and large
// messages count alike (relative error). `steps` is the ring steps of one call
// (2(n−1) for an all-reduce). A negative fitted latency is clamped to 0 and the
// bandwidth refitted through the origin.
struct LatencyBandwidth {
  double latency_s = 0;     // per ring step
  double bandwidth = 0;     // bytes/s, one direction, per rank
};
LatencyBandwidth fit_latency_bandwidth(const std::vector<double>& bytes_per_rank,
                                       const std::vector<double>& seconds, int steps);

// Applies {"calibration": {"intra_gbps": .., "intra_latency_us": .., "peak_tflops": ..,
// "gemm_efficiency": .., "hbm_gbps": .., "memory_traffic": .., "inter_gbps": ..,
// "inter_latency_us": .., "node_contention": ..}} (any subset; the same names and units as plan's --cluster.*
// keys) from `json_text` to `c`. A document without a "calibration" object, an unknown
// key or a value that is not a positive number (latencies may be 0) throws gpt::Error
// naming `what` and the key.
void apply_calibration_json(Cluster& c, const std::string& json_text, const std::string& what);

}  // namespace gpt::perf
