// plan: predicts a training step's time, memory and MFU for a model on a cluster under a
// parallel layout (perf/perf_model.h), searches the layouts that fit (--search), and
// checks the model against published results (--validate). Nothing is run or allocated:
// it answers on a laptop for thousands of GPUs.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "perf/calibration.h"
#include "perf/report.h"

namespace po = boost::program_options;
using namespace gpt;
using namespace gpt::perf;

namespace {

struct Args {
  std::string model_preset = "gpt2-1.5B", cluster_preset = "h100-sxm", recompute = "none", dtype = "bf16";
  std::string family, schedule = "1f1b";  // family empty: the preset's
  std::string layers_per_stage;           // "3,3,2"; empty: balanced
  int n_kv_head = -1, ffn_hidden = -1;    // -1: the preset's
  std::string cluster_json;  // measured numbers applied on top of the preset
  int n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, n_experts = 0, top_k = 1;
  int seq_len = 1024, micro_batch = 1, global_batch = 512;  // GPT-2: 512 x 1024 tokens
  int tp = 1, pp = 1, dp = 0, ep = 1, v = 1, top = 5;
  bool zero1 = false, shard_master = false, sp = true, flash = true, tied_head = true;
  double tp_overlap = Layout().tp_overlap, dp_overlap = Layout().dp_overlap, bucket_mb = Layout().bucket_mb;
  double param_gather_overlap = Layout().param_gather_overlap;
  // cluster overrides (0 = the preset's)
  int gpus = 0, gpus_per_node = 0;
  double peak_tflops = 0, memory_gb = 0, hbm_gbps = 0, intra_gbps = 0, inter_gbps = 0, intra_us = -1,
         inter_us = -1, gemm_eff = 0, mem_traffic = 0, node_contention = 0;
};

po::options_description describe(Args& a) {
  po::options_description d("plan [--validate | --search] [--section.key value ...]");
  auto add = d.add_options();
  add("help,h", "print this help");
  add("validate", "predicted vs published tables (Narayanan et al. 2021 Table 1, Megatron-LM H100) and the planner's sanity checks");
  add("search", "enumerate the layouts that fit on cluster.gpus at train.global_batch and print the fastest");
  add("top", po::value(&a.top)->default_value(a.top), "layouts --search prints");
  add("model.preset", po::value(&a.model_preset)->default_value(a.model_preset), "tiny | gpt2-124M | gpt2-350M | gpt2-774M | gpt2-1.5B | llama-tiny | llama-1B | llama2-7B | llama3-8B");
  add("model.n_layer", po::value(&a.n_layer), "layers (overrides the preset)");
  add("model.n_head", po::value(&a.n_head), "attention heads (overrides the preset)");
  add("model.n_embd", po::value(&a.n_embd), "hidden size (overrides the preset)");
  add("model.vocab_size", po::value(&a.vocab_size), "vocabulary (overrides the preset)");
  add("model.tied_head", po::value(&a.tied_head), "LM head tied to the embedding (default: the preset's)");
  add("model.family", po::value(&a.family), "gpt2 | llama (default: the preset's)");
  add("model.n_kv_head", po::value(&a.n_kv_head), "LLaMA key/value heads; 0 = n_head");
  add("model.ffn_hidden", po::value(&a.ffn_hidden), "LLaMA SwiGLU width; 0 = 8C/3 rounded up to 256");
  add("model.n_experts", po::value(&a.n_experts)->default_value(a.n_experts), "MoE experts per MLP; 0 = dense");
  add("model.top_k", po::value(&a.top_k)->default_value(a.top_k), "MoE experts per token");
  add("train.seq_len", po::value(&a.seq_len)->default_value(a.seq_len), "sequence length");
  add("train.micro_batch", po::value(&a.micro_batch)->default_value(a.micro_batch), "sequences per micro-batch");
  add("train.global_batch", po::value(&a.global_batch)->default_value(a.global_batch), "sequences per step (all data-parallel ranks); 0 = dp x micro_batch");
  add("train.recompute", po::value(&a.recompute)->default_value(a.recompute), "none | selective | full");
  add("train.dtype", po::value(&a.dtype)->default_value(a.dtype), "bf16 | fp32 activations");
  add("parallel.tp", po::value(&a.tp)->default_value(a.tp), "tensor parallel size");
  add("parallel.pp", po::value(&a.pp)->default_value(a.pp), "pipeline stages");
  add("parallel.schedule", po::value(&a.schedule)->default_value(a.schedule), "gpipe | 1f1b | interleaved | zb-h1 (the micro-batches each stage holds; interleaved when virtual_stages > 1)");
  add("parallel.layers_per_stage", po::value(&a.layers_per_stage), "blocks of each pipeline chunk, e.g. 3,3,2 (pretrain's key; default balanced); the memory plan follows it");
  add("parallel.virtual_stages", po::value(&a.v)->default_value(a.v), "model chunks per stage (interleaved 1F1B when > 1)");
  add("parallel.dp", po::value(&a.dp)->default_value(a.dp), "data parallel size; 0 = cluster.gpus / (tp x pp)");
  add("parallel.ep", po::value(&a.ep)->default_value(a.ep), "expert parallel size (divides dp)");
  add("parallel.zero1", po::value(&a.zero1)->default_value(a.zero1), "shard the optimizer state over dp");
  add("parallel.shard_master", po::value(&a.shard_master)->default_value(a.shard_master), "with zero1, shard the fp32 master weights too (Megatron's distributed optimizer; this framework's ZeRO-1 does not)");
  add("parallel.sequence_parallel", po::value(&a.sp)->default_value(a.sp), "sequence parallelism with TP");
  add("parallel.flash_attention", po::value(&a.flash)->default_value(a.flash), "attention without a stored s x s matrix");
  add("parallel.tp_overlap", po::value(&a.tp_overlap)->default_value(a.tp_overlap), "fraction of TP traffic hidden");
  add("parallel.dp_overlap", po::value(&a.dp_overlap)->default_value(a.dp_overlap), "fraction of the gradient reduction hidden behind backward (of all but the last bucket's)");
  add("parallel.bucket_mb", po::value(&a.bucket_mb)->default_value(a.bucket_mb), "gradient bucket, MiB (pretrain's parallel.bucket_mb)");
  add("parallel.param_gather_overlap", po::value(&a.param_gather_overlap)->default_value(a.param_gather_overlap), "fraction of ZeRO-1's parameter all-gather hidden behind the next forward (pretrain: 0, it waits)");
  add("cluster.preset", po::value(&a.cluster_preset)->default_value(a.cluster_preset), "a100-80gb | h100-sxm | local");
  add("cluster.from_json", po::value(&a.cluster_json), "measured numbers over the preset: a JSON file with a \"calibration\" object (benchmarks/scaling_bench.py writes one); explicit --cluster.* keys still win");
  add("cluster.gpus", po::value(&a.gpus), "devices in the job (default: the preset's, or tp x pp x dp)");
  add("cluster.gpus_per_node", po::value(&a.gpus_per_node), "devices per node");
  add("cluster.peak_tflops", po::value(&a.peak_tflops), "dense bf16 TFLOP/s per device");
  add("cluster.memory_gb", po::value(&a.memory_gb), "memory per device, GB");
  add("cluster.hbm_gbps", po::value(&a.hbm_gbps), "memory bandwidth per device, GB/s");
  add("cluster.intra_gbps", po::value(&a.intra_gbps), "intra-node bandwidth per device, one direction, GB/s");
  add("cluster.inter_gbps", po::value(&a.inter_gbps), "inter-node bandwidth per node, one direction, GB/s");
  add("cluster.intra_latency_us", po::value(&a.intra_us), "intra-node latency per ring step, us");
  add("cluster.inter_latency_us", po::value(&a.inter_us), "inter-node latency per ring step, us");
  add("cluster.gemm_efficiency", po::value(&a.gemm_eff), "achieved fraction of peak on GEMMs");
  add("cluster.memory_traffic", po::value(&a.mem_traffic), "activation bytes moved per pass by memory-bound ops");
  add("cluster.node_contention", po::value(&a.node_contention), "compute slowdown of a rank when every device of its node computes (CPU sockets; measured by scaling_bench)");
  return d;
}

Cluster make_cluster(const Args& a, int layout_gpus) {
  Cluster c = cluster_preset(a.cluster_preset);
  if (!a.cluster_json.empty()) {
    std::ifstream f(a.cluster_json);
    GPT_CHECK(f, "config key 'cluster.from_json': cannot read " + a.cluster_json);
    std::stringstream text;
    text << f.rdbuf();
    apply_calibration_json(c, text.str(), "config key 'cluster.from_json' (" + a.cluster_json + ")");
  }
  if (a.gpus) c.gpus = a.gpus;
  else if (layout_gpus) c.gpus = layout_gpus;
  if (a.gpus_per_node) c.gpus_per_node = a.gpus_per_node;
  if (a.peak_tflops) c.peak_flops = a.peak_tflops * 1e12;
  if (a.memory_gb) c.memory_bytes = a.memory_gb * 1e9;
  if (a.hbm_gbps) c.hbm_bw = a.hbm_gbps * 1e9;
  if (a.intra_gbps) c.intra_node_bw = a.intra_gbps * 1e9;
  if (a.inter_gbps) c.inter_node_bw = a.inter_gbps * 1e9;
  if (a.intra_us >= 0) c.intra_node_latency = a.intra_us * 1e-6;
  if (a.inter_us >= 0) c.inter_node_latency = a.inter_us * 1e-6;
  if (a.gemm_eff) c.gemm_efficiency = a.gemm_eff;
  if (a.mem_traffic) c.memory_traffic = a.mem_traffic;
  if (a.node_contention) c.node_contention = a.node_contention;
  return c;
}

int run_validate() {
  const std::vector<PublishedTable> tables = published_tables();
  const std::vector<TableCheck> checks = validate(tables);
  std::fputs(describe_validation(checks).c_str(), stdout);
  // The presets' constants, recomputed from the calibration rows alone.
  const Calibration cal = calibrate(tables);
  std::printf("\ncalibration rerun on the 'cal' rows only: memory_traffic %.2f", cal.constants.memory_traffic);
  for (size_t i = 0; i < tables.size(); ++i)
    std::printf(", %s gemm_efficiency %.2f", tables[i].cluster.c_str(), cal.constants.gemm_efficiency[i]);
  std::printf(" (max |error| on those rows %.1f%%)\n", 100 * cal.max_abs_error_calibration_rows);
  const PlannerSanity s = planner_sanity();
  std::fputs(describe_sanity(s).c_str(), stdout);
  std::string json = "{";
  for (const TableCheck& tc : checks)
    json += "\"" + tc.table->name + "_max_rel_error\":" + std::to_string(tc.max_abs_error) + ",\"" +
            tc.table->name + "_max_rel_error_held_out\":" + std::to_string(tc.max_abs_error_held_out) + ",";
  json += "\"planner_145b_speedup\":" + std::to_string(s.published.step / s.best_145b.prediction.step) +
          ",\"planner_145b_fits\":" + (s.best_145b.prediction.fits ? "true" : "false") +
          ",\"gpt2_1p5b_h100x8_mfu\":" + std::to_string(s.best_gpt2.prediction.mfu) + "}";
  std::printf("RESULT plan_validate %s\n", json.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a;
    po::options_description d = describe(a);
    po::variables_map vm;
    try {
      po::store(po::parse_command_line(argc, argv, d), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      fail(std::string("plan: ") + e.what());
    }
    if (vm.count("help")) {
      std::cout << d << "\n";
      return 0;
    }
    if (vm.count("validate")) return run_validate();

    GPTConfig g = gpt_preset(a.model_preset);
    if (!a.family.empty()) {
      const ModelFamily family = parse_family(a.family);
      if (family != g.family) g.tie_embeddings = family == ModelFamily::GPT2;  // that family's default head
      g.family = family;
    }
    if (vm.count("model.tied_head")) g.tie_embeddings = a.tied_head;
    if (a.n_kv_head >= 0) g.n_kv_head = a.n_kv_head;
    if (a.ffn_hidden >= 0) g.ffn_hidden = a.ffn_hidden;
    if (a.n_layer) g.n_layer = a.n_layer;
    if (a.n_head) g.n_head = a.n_head;
    if (a.n_embd) g.n_embd = a.n_embd;
    if (a.vocab_size) g.vocab_size = a.vocab_size;
    if (a.seq_len > g.block_size) g.block_size = a.seq_len;  // a longer position table
    // LLaMA shapes as pretrain checks them (GPT-2's check would refuse Megatron's untied head).
    if (g.family == ModelFamily::Llama) g.validate();
    ModelShape m = ModelShape::from_gpt(g, a.seq_len);
    m.n_experts = a.n_experts, m.top_k = a.top_k;

    Layout L;
    L.tp = a.tp, L.pp = a.pp, L.virtual_stages = a.v, L.ep = a.ep, L.micro_batch = a.micro_batch;
    L.recompute = parse_recompute(a.recompute);
    L.schedule = parallel::pipeline::parse_schedule(a.schedule);
    std::stringstream counts(a.layers_per_stage);
    for (std::string item; std::getline(counts, item, ',');) {
      try {
        L.layers_per_stage.push_back(std::stoi(item));
      } catch (const std::exception&) {
        fail("config key 'parallel.layers_per_stage': '" + item + "' is not a number");
      }
    }
    GPT_CHECK(a.dtype == "bf16" || a.dtype == "fp32", "config key 'train.dtype' must be bf16 or fp32, got '" + a.dtype + "'");
    L.act = a.dtype == "bf16" ? DType::BF16 : DType::F32;
    L.zero1 = a.zero1, L.shard_master = a.shard_master, L.sequence_parallel = a.sp, L.flash_attention = a.flash;
    L.tp_overlap = a.tp_overlap, L.dp_overlap = a.dp_overlap, L.bucket_mb = a.bucket_mb;
    L.param_gather_overlap = a.param_gather_overlap;
    const Cluster c = make_cluster(a, a.dp > 0 ? a.tp * a.pp * a.dp : 0);
    GPT_CHECK(a.tp > 0 && a.pp > 0, "config key 'parallel.tp' and 'parallel.pp' must be positive");
    L.dp = a.dp > 0 ? a.dp : c.gpus / (a.tp * a.pp);
    if (a.dp == 0)
      GPT_CHECK(c.gpus % (a.tp * a.pp) == 0, "config key 'cluster.gpus' (" + std::to_string(c.gpus) +
                                                 ") is not divisible by parallel.tp x parallel.pp");
    L.global_batch = a.global_batch > 0 ? a.global_batch : L.dp * L.micro_batch;

    if (vm.count("search")) {
      const std::vector<Candidate> best = search_layouts(m, c, L, a.top);
      std::printf("model: %d layers, hidden %d, %d heads, seq %d: %.3g B parameters; %d x %s; global batch %d\n",
                  m.n_layer, m.n_embd, m.n_head, m.seq_len, m.num_params() / 1e9, c.gpus, c.name.c_str(),
                  L.global_batch);
      std::printf("%d layouts predicted, the fastest that fit in %.0f GB:\n", search_layouts_evaluated(),
                  c.memory_bytes / 1e9);
      std::fputs(describe_search(best, c).c_str(), stdout);
      GPT_CHECK(!best.empty(), "plan --search: no layout fits in memory; add devices or shrink train.micro_batch");
      std::printf("RESULT plan %s\n", prediction_json(best[0].layout, best[0].prediction).c_str());
      return 0;
    }
    const Prediction p = predict(m, c, L);
    std::fputs(describe_prediction(m, c, L, p).c_str(), stdout);
    std::printf("RESULT plan %s\n", prediction_json(L, p).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plan: %s\n", e.what());
    return 1;
  }
}
