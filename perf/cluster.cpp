// Cluster presets. Vendor figures: NVIDIA A100 datasheet (312 TFLOP/s dense bf16,
// 80 GB HBM2e at 2.039 TB/s, NVLink3/NVSwitch 600 GB/s bidirectional = 300 GB/s one
// way); DGX A100: 8 × 200 Gb/s HDR InfiniBand per node (the cluster of Narayanan et al.
// 2021, §5). NVIDIA H100 SXM5 datasheet (989 TFLOP/s dense bf16, 80 GB HBM3 at
// 3.35 TB/s, NVLink4 900 GB/s bidirectional = 450 GB/s one way); DGX H100: 8 × 400 Gb/s
// NDR. Latencies are typical per-hop figures (NVSwitch ~1 µs, InfiniBand ~5 µs).
#include "core/error.h"
#include "perf/perf_model.h"

namespace gpt::perf {

namespace {
constexpr double GB = 1e9, TF = 1e12, Gbit = 1e9 / 8;
}

Cluster cluster_preset(const std::string& name) {
  Cluster c;
  c.name = name;
  if (name == "a100-80gb") {
    c.gpus = 8, c.gpus_per_node = 8;
    c.peak_flops = 312 * TF, c.memory_bytes = 80 * GB, c.hbm_bw = 2039 * GB;
    c.intra_node_bw = 300 * GB, c.intra_node_latency = 1e-6;
    c.inter_node_bw = 8 * 200 * Gbit, c.inter_node_latency = 5e-6;
    // Calibrated (least squares, perf::calibrate) on Narayanan et al. 2021 Table 1 rows
    // 1.7B, 18.4B, 145.6B and 529.6B (perf/published.cpp); the other six are held out.
    c.gemm_efficiency = 0.61;
  } else if (name == "h100-sxm") {
    c.gpus = 8, c.gpus_per_node = 8;
    c.peak_flops = 989 * TF, c.memory_bytes = 80 * GB, c.hbm_bw = 3350 * GB;
    c.intra_node_bw = 450 * GB, c.intra_node_latency = 1e-6;
    c.inter_node_bw = 8 * 400 * Gbit, c.inter_node_latency = 5e-6;
    // Calibrated likewise on the Megatron-LM README H100 rows 7.1B, 70B and 314B; the
    // other six are held out.
    c.gemm_efficiency = 0.61;
  } else if (name == "local") {
    // This CPU machine, placeholders until the communication benchmark calibrates them
    // (every field can be overridden on the command line: --cluster.peak_tflops, ...):
    // 2 cores × AVX2 FMA (32 fp32 FLOP/cycle) × ~3 GHz; ranks are processes talking
    // through shared memory.
    c.gpus = 1, c.gpus_per_node = 2;
    c.peak_flops = 0.2 * TF, c.memory_bytes = 8 * GB, c.hbm_bw = 20 * GB;
    c.intra_node_bw = 5 * GB, c.intra_node_latency = 5e-6;
    c.inter_node_bw = 1.25 * GB, c.inter_node_latency = 50e-6;
    c.gemm_efficiency = 0.5;
    c.device = Device::CPU;
  } else {
    fail("config key 'cluster.preset': unknown preset '" + name + "' (known: a100-80gb h100-sxm local)");
  }
  // Shared by every accelerator: memory-bound ops move their layer's activation bytes
  // 1.0 times per pass (calibrated jointly with the GEMM efficiencies above;
  // tests/perf/published_test.cpp checks that rerunning the calibration gives these).
  c.memory_traffic = 1.0;
  return c;
}

}  // namespace gpt::perf
