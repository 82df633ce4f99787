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

// One collective kind's measured times fitted per regime (CollectiveCost): the points are
// sorted by message size; the large regime begins at the first size whose time per byte
// is more than 1.5× the size's before it, and stays so for every larger size, with at
// least two points on each side (else one regime). Each regime is fitted by
// fit_latency_bandwidth over bytes per rank = message × bus_bandwidth_factor(op, n) with
// the ring's steps (2(n−1) all-reduce, n−1 reduce-scatter, all-gather, all-to-all, 1
// send/recv), so collective_time gives the fitted line back. Why: Open MPI's non-blocking
// reduce-scatter (libnbc) reduces the whole buffer to rank 0 and scatters it, through a
// temporary buffer of twice the message; the all-reduce's is the message. On this
// machine both slow down 2-3× from the size where that buffer reaches 32 MiB (comm_bench:
// reduce-scatter from 16 MiB, all-reduce from 32 MiB), glibc's largest mmap threshold,
// above which every call maps, faults in and unmaps fresh pages. One line over all sizes
// would average the two regimes.
CollectiveCost fit_collective(const std::string& op, const std::vector<double>& message_bytes,
                              const std::vector<double>& seconds, int n);

// Applies {"calibration": {"intra_gbps": .., "intra_latency_us": .., "peak_tflops": ..,
// "gemm_efficiency": .., "hbm_gbps": .., "memory_traffic": .., "inter_gbps": ..,
// "inter_latency_us": .., "node_contention": ..}} (any subset; the same names and units as
// plan's --cluster.* keys) from `json_text` to `c`, and per collective kind OP (allreduce
// reduce_scatter allgather all_to_all sendrecv: comm_bench's fit_collective, applied inside
// a node) "OP_gbps" (bus bandwidth, GB/s), "OP_latency_us" (per ring step), and for its
// large-message regime "OP_large_from_mb" (message size, 1e6 bytes, from which it applies),
// "OP_large_gbps", "OP_large_latency_us". An unset OP_gbps leaves that kind on intra_gbps.
// A document without a "calibration" object, an unknown key or a value that is not a
// positive number (latencies may be 0) throws gpt::Error naming `what` and the key.
void apply_calibration_json(Cluster& c, const std::string& json_text, const std::string& what);

}  // namespace gpt::perf
