#include "launch/config.h"
#include "launch/spike_policy.h"
#include "launch/watchdog.h"

#include <boost/program_options.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/layers/block.h"

namespace po = boost::program_options;

namespace gpt {

namespace {

// Model keys start unset so that a preset supplies them unless the user overrides.
struct ModelOverrides {
  int n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, block_size = 0;
  std::string family, tie_embeddings;  // empty: the preset's
  int n_kv_head = -1, ffn_hidden = -1;  // -1: the preset's
  float rope_theta = 0.f, norm_eps = 0.f;
  // No preset has experts, so the moe.* keys are plain values with the dense defaults.
  MoeConfig moe;
  int moe_every = 1;
};

// The shortest text that reads back as exactly `v`, as a person types it: "6e-4" (not
// "0.000600000028", nor printf's "0.0006" or "6e-04"), "0.95", "3600".
template <class T>
std::string shortest(T v) {
  char buf[48];
  if (std::isfinite(double(v)) && double(v) == std::trunc(double(v)) && std::fabs(double(v)) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", double(v));  // 3600, not 3.6e+03
    return buf;
  }
  if (!std::isfinite(double(v))) return std::isnan(double(v)) ? "nan" : v > 0 ? "inf" : "-inf";
  int digits = 1;
  for (; digits < 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
    if (T(std::strtod(buf, nullptr)) == v) break;
  }
  // Both notations with those digits; the exponent without '+' or leading zeros.
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, digits - 1 - int(std::floor(std::log10(std::fabs(double(v)))))),
                double(v));
  const std::string fixed = buf;
  std::snprintf(buf, sizeof buf, "%.*e", digits - 1, double(v));
  std::string sci = buf;
  const size_t e = sci.find('e');
  std::string exponent = sci.substr(e + 1);
  const bool negative = exponent[0] == '-';
  exponent = exponent.substr(exponent.find_first_not_of("+-0") == std::string::npos ? exponent.size() - 1
                                                                                 : exponent.find_first_not_of("+-0"));
  sci = sci.substr(0, e + 1) + (negative ? "-" : "") + exponent;
  const std::string& best = sci.size() < fixed.size() ? sci : fixed;
  // Either must read back as v; printf's rounding of the fixed form can differ at the
  // last digit of extreme values, so check rather than trust.
  if (T(std::strtod(best.c_str(), nullptr)) == v) return best;
  if (T(std::strtod(sci.c_str(), nullptr)) == v) return sci;
  std::snprintf(buf, sizeof buf, "%.17g", double(v));
  return buf;
}

// A key bound to `p`, defaulting to its current value; --help prints floats as typed.
template <class T>
po::typed_value<T>* keyed(T* p) {
  if constexpr (std::is_floating_point_v<T>) return po::value(p)->default_value(*p, shortest(*p));
  else return po::value(p)->default_value(*p);
}

po::options_description describe(TrainConfig& c, ModelOverrides& m) {
  po::options_description d("Configuration keys (INI sections in the config file, --section.key on the command line)");
  auto add = d.add_options();
  add("model.preset", keyed(&c.model_preset),
      "tiny | gpt2-124M | gpt2-350M | gpt2-774M | gpt2-1.5B | llama-tiny | llama-1B | llama2-7B | llama3-8B");
  add("model.family", po::value(&m.family), "gpt2 | llama (overrides the preset's)");
  add("model.n_layer", po::value(&m.n_layer), "transformer blocks (overrides the preset)");
  add("model.n_head", po::value(&m.n_head), "attention heads (overrides the preset)");
  add("model.n_embd", po::value(&m.n_embd), "model width (overrides the preset)");
  add("model.vocab_size", po::value(&m.vocab_size), "vocabulary size (overrides the preset)");
  add("model.block_size", po::value(&m.block_size), "maximum sequence length (overrides the preset)");
  add("model.n_kv_head", po::value(&m.n_kv_head),
      "llama: key/value heads of grouped-query attention, dividing n_head (0: n_head)");
  add("model.ffn_hidden", po::value(&m.ffn_hidden), "llama: SwiGLU width (0: 8 n_embd / 3 rounded up to 256)");
  add("model.rope_theta", po::value(&m.rope_theta), "llama: RoPE base (10000 LLaMA 2, 500000 LLaMA 3)");
  add("model.norm_eps", po::value(&m.norm_eps), "llama: RMSNorm epsilon");
  add("model.tie_embeddings", po::value(&m.tie_embeddings),
      "true | false: the LM head shares the token embedding (gpt2: always; llama presets: false)");
  add("moe.experts", keyed(&m.moe.experts),
      "mixture of experts: experts E per MoE block; 0 = the dense model (gpt2 only, parallel.sp = false, "
      "train.device = cpu, train.dtype = fp32, train.recompute = none for now)");
  add("moe.top_k", keyed(&m.moe.top_k), "experts each token is routed to (k)");
  add("moe.every", keyed(&m.moe_every),
      "which blocks' MLPs are MoE: block l (from 0) when (l + 1) % every == 0; 1 = all, 2 = blocks 1, 3, 5, ...");
  add("moe.expert_hidden", keyed(&m.moe.expert_hidden), "hidden width of each expert's GELU MLP; 0 = 4 n_embd");
  add("moe.shared_experts", keyed(&m.moe.shared_experts),
      "always-on shared experts (one dense GELU MLP of shared_experts x expert_hidden); 0 = none");
  add("moe.capacity_factor", keyed(&m.moe.capacity_factor),
      "expert slots per group: ceil(cf x group tokens x top_k / experts), the rest dropped; 0 = dropless");
  add("moe.group_tokens", keyed(&m.moe.group_tokens),
      "tokens per routing group (capacity and load-balancing statistics); 0 = one sequence (train.seq_len)");
  add("moe.aux_loss", keyed(&m.moe.aux_loss), "load-balancing loss coefficient (Switch / GShard)");
  add("moe.z_loss", keyed(&m.moe.z_loss), "router z-loss coefficient");
  add("moe.renormalize", keyed(&m.moe.renormalize), "divide the top_k chosen router probabilities by their sum");
  add("train.seed", keyed(&c.seed), "seed for init and data order");
  add("train.micro_batch", keyed(&c.micro_batch), "sequences per micro-batch per rank");
  add("train.seq_len", keyed(&c.seq_len), "tokens per sequence (T)");
  add("train.grad_accum", keyed(&c.grad_accum), "micro-batches per step per rank");
  add("train.steps", keyed(&c.steps), "optimizer steps");
  add("train.lr", keyed(&c.lr), "peak learning rate");
  add("train.min_lr", keyed(&c.min_lr), "final learning rate of the cosine");
  add("train.warmup", keyed(&c.warmup), "linear warmup steps");
  add("train.weight_decay", keyed(&c.weight_decay), "AdamW decoupled weight decay (matmul weights only)");
  add("train.beta1", keyed(&c.beta1), "AdamW beta1");
  add("train.beta2", keyed(&c.beta2), "AdamW beta2");
  add("train.eps", keyed(&c.eps), "AdamW epsilon");
  add("train.grad_clip", keyed(&c.grad_clip), "global grad-norm clip; 0 = off");
  add("train.threads", keyed(&c.threads), "CPU threads per rank; 0 = all cores");
  add("train.device", keyed(&c.device), "cpu | cuda");
  add("train.dtype", keyed(&c.dtype), "fp32 | bf16 (mixed precision: bf16 activations and weight copies, fp32 master weights, grads and optimizer)");
  add("train.profile_ops", keyed(&c.profile_ops),
      "time every op (synchronising around each, so steps run slower) and print where the steps go");
  add("train.plan_only", keyed(&c.plan_only),
      "print the memory plan per rank under each recompute mode and exit: no data, no device, "
      "no training (does the run fit?)");
  add("train.recompute", keyed(&c.recompute), "activation recomputation: none | selective | full");
  add("train.on_spike", keyed(&c.on_spike),
      "what a loss spike or a non-finite loss/gradient norm does: stop | skip (drop the update) | "
      "rollback (reload the last checkpoint, skip the data since)");
  add("train.spike_zscore", keyed(&c.spike_zscore),
      "a loss more than this many standard deviations above the recent mean is a spike; 0 = only non-finite");
  add("train.spike_window", keyed(&c.spike_window), "recent steps the spike z-score is computed over");
  add("train.watchdog_k", keyed(&c.watchdog_k),
      "a training step running longer than k x the median of the recent steps (and train.watchdog_min_s) "
      "prints which rank and phase it is in (data, forward, backward, communication, optimizer), "
      "before parallel.timeout_s ends the job; 0 = off");
  add("train.watchdog_min_s", keyed(&c.watchdog_min_s), "the watchdog never reports a step shorter than this");
  add("eval.every", keyed(&c.eval_every), "validation every N steps; 0 = never");
  add("eval.steps", keyed(&c.eval_steps), "validation micro-batches");
  add("data.mixture", keyed(&c.data_mixture), "mixture config; empty = synthetic tokens");
  add("data.tokenizer_dir", keyed(&c.tokenizer_dir), "folder with GPT-2's encoder.json and vocab.bpe");
  add("run.dir", keyed(&c.run_dir), "output folder: metrics.jsonl and checkpoints");
  add("run.checkpoint_every", keyed(&c.checkpoint_every), "checkpoint every N steps; 0 = never");
  add("run.save_final", keyed(&c.save_final), "checkpoint after the last step");
  add("run.keep", keyed(&c.keep_checkpoints), "checkpoints kept (oldest deleted)");
  add("run.resume", keyed(&c.resume), "resume from the latest checkpoint in run.dir");
  add("run.resume_from", keyed(&c.resume_from),
      "resume the full state (parameters, optimizer, step, data) from this checkpoint directory or consolidated .h5");
  add("run.init_from", keyed(&c.init_from),
      "start from the parameters of this checkpoint (directory or .h5) with a fresh optimizer at step 0");
  add("run.async_checkpoint", keyed(&c.async_checkpoint),
      "write checkpoints on a background thread from a host copy while training continues");
  add("run.checkpoint_timeout_s", keyed(&c.checkpoint_timeout_s),
      "abort when ranks have not all finished writing a checkpoint after this long");
  add("run.log_every", keyed(&c.log_every), "print a step line every N steps");
  add("sample.tokens", keyed(&c.sample_tokens), "tokens to generate after training; 0 = none");
  add("sample.temperature", keyed(&c.sample_temperature), "sampling temperature");
  add("sample.top_k", keyed(&c.sample_top_k), "sample from the k most likely tokens; 0 = all");
  add("sample.prompt", keyed(&c.sample_prompt), "text the sample starts from");
  add("sample.checkpoint", keyed(&c.sample_checkpoint), "checkpoint the sample program loads (default: the latest in run.dir)");
  add("parallel.tp", keyed(&c.tp),
      "tensor-parallel ranks per model (Megatron-style: heads and MLP split, adjacent ranks); "
      "data parallelism takes world / tp");
  add("parallel.sp", keyed(&c.sp),
      "sequence parallelism (Korthikanti et al. 2022): norms, residual adds and the embedding output "
      "sharded by rows over the parallel.tp ranks, all-gather / reduce-scatter instead of all-reduce; "
      "needs parallel.tp > 1 and train.micro_batch x train.seq_len divisible by it");
  add("parallel.pp", keyed(&c.pp),
      "pipeline stages: the layers cut into consecutive stages, one per rank of a pipeline group; "
      "the micro-batches of a step (train.grad_accum) flow through them");
  add("parallel.ep", keyed(&c.ep),
      "expert parallelism: each MoE layer's experts split over this many of the data-parallel ranks "
      "(divides the data-parallel size and moe.experts); tokens travel to their experts by all-to-all");
  add("parallel.schedule", keyed(&c.schedule), "pipeline schedule: gpipe | 1f1b | interleaved | zb-h1");
  add("parallel.virtual_stages", keyed(&c.virtual_stages),
      "model chunks per pipeline rank (interleaved schedule): rank r holds chunks r, r + pp, ...");
  add("parallel.layers_per_stage", keyed(&c.layers_per_stage),
      "layers of each pipeline chunk in model order, e.g. 3,3,2; empty = balanced (head cost counted)");
  add("parallel.timeline", keyed(&c.pipeline_timeline),
      "write the last step's pipeline schedule as a Chrome-trace JSON (opens in Perfetto) to this file");
  add("parallel.zero1", keyed(&c.zero1), "shard AdamW state across data-parallel ranks");
  add("parallel.overlap", keyed(&c.dp_overlap), "overlap gradient all-reduce with backward");
  add("parallel.bucket_mb", keyed(&c.bucket_mb), "gradient bucket size in MB");
  add("parallel.timeout_s", keyed(&c.comm_timeout_s), "abort when a collective takes longer");
  add("debug.spike_step", keyed(&c.debug_spike_step), "multiply the loss at this step by debug.spike_factor (testing)");
  add("debug.spike_factor", keyed(&c.debug_spike_factor), "the injected spike's factor (testing)");
  add("debug.nan_step", keyed(&c.debug_nan_step), "inject a NaN loss at this step, counted from 1 as in the log (testing)");
  add("debug.nan_grad_step", keyed(&c.debug_nan_grad_step), "inject a NaN gradient with a finite loss at this step (testing)");
  add("debug.exit_step", keyed(&c.debug_exit_step), "debug.exit_rank exits at this step (testing)");
  add("debug.exit_rank", keyed(&c.debug_exit_rank), "rank that exits (testing)");
  add("debug.hang", keyed(&c.debug_hang), "debug.exit_rank hangs at debug.exit_step instead of exiting (testing)");
  add("debug.save_delay_ms", keyed(&c.debug_save_delay_ms), "sleep between checkpoint piece writes (testing)");
  add("debug.slow_step", keyed(&c.debug_slow_step),
      "debug.slow_rank sleeps debug.slow_s on entering debug.slow_phase of this step (testing the watchdog)");
  add("debug.slow_rank", keyed(&c.debug_slow_rank), "rank that sleeps at debug.slow_step (testing)");
  add("debug.slow_phase", keyed(&c.debug_slow_phase),
      "data | forward | backward | communication | optimizer: where debug.slow_rank sleeps (testing)");
  add("debug.slow_s", keyed(&c.debug_slow_s), "seconds debug.slow_rank sleeps (testing)");
  return d;
}

std::string value_text(const po::variable_value& v) {
  const boost::any& a = v.value();
  std::ostringstream os;
  if (auto p = boost::any_cast<std::string>(&a)) os << *p;
  else if (auto p = boost::any_cast<int>(&a)) os << *p;
  else if (auto p = boost::any_cast<int64_t>(&a)) os << *p;
  else if (auto p = boost::any_cast<uint64_t>(&a)) os << *p;
  else if (auto p = boost::any_cast<float>(&a)) os << shortest(*p);
  else if (auto p = boost::any_cast<double>(&a)) os << shortest(*p);
  else if (auto p = boost::any_cast<bool>(&a)) os << (*p ? "true" : "false");
  return os.str();
}

// Boost.program_options (1.74) writes its error messages by replacing these placeholders
// until none is left, so one inside a key or value that reaches such a message loops
// forever: a config with the key "x%original_token%" hung pretrain (found by
// tests/fuzz/fuzz_config_ini). Refused before the parser sees them.
void refuse_parser_placeholders(const std::string& text, const std::string& where) {
  for (const char* p : {"%canonical_option%", "%option%", "%original_token%", "%value%", "%prefix%"})
    GPT_CHECK(text.find(p) == std::string::npos,
              where + ": '" + p + "' cannot appear in a key or value (a placeholder of the option parser's messages)");
}

}  // namespace

bool parse_config(int argc, char** argv, TrainConfig& c) {
  for (int i = 1; i < argc; ++i) refuse_parser_placeholders(argv[i], "command line");
  ModelOverrides m;
  po::options_description keys = describe(c, m);
  po::options_description cli("pretrain [CONFIG.ini] [--section.key value ...]");
  cli.add_options()("help,h", "print this help")("config", po::value<std::string>(), "config file");
  cli.add(keys);
  po::positional_options_description pos;
  pos.add("config", 1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(cli).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << cli << "\n";
      return false;
    }
    if (vm.count("config")) {
      std::string path = vm["config"].as<std::string>();
      if (!std::filesystem::is_regular_file(path)) fail("config file " + path + ": no such file");
      std::ifstream file(path);
      std::ostringstream text;
      text << file.rdbuf();
      refuse_parser_placeholders(text.str(), "config file " + path);
      std::istringstream in(text.str());
      try {
        po::store(po::parse_config_file(in, keys, /*allow_unregistered=*/false), vm);
      } catch (const po::error& e) {
        fail("config file " + path + ": " + e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail(std::string("config: ") + e.what());
  }

  c.model = gpt_preset(c.model_preset);
  if (m.n_layer) c.model.n_layer = m.n_layer;
  if (m.n_head) c.model.n_head = m.n_head;
  if (m.n_embd) c.model.n_embd = m.n_embd;
  if (m.vocab_size) c.model.vocab_size = m.vocab_size;
  if (m.block_size) c.model.block_size = m.block_size;
  if (!m.family.empty()) {
    const ModelFamily family = parse_family(m.family);  // throws naming the key
    // A family chosen over another family's preset takes that family's default head.
    if (family != c.model.family) c.model.tie_embeddings = family == ModelFamily::GPT2;
    c.model.family = family;
  }
  if (m.n_kv_head >= 0) c.model.n_kv_head = m.n_kv_head;
  if (m.ffn_hidden >= 0) c.model.ffn_hidden = m.ffn_hidden;
  if (m.rope_theta != 0.f) c.model.rope_theta = m.rope_theta;
  if (m.norm_eps != 0.f) c.model.norm_eps = m.norm_eps;
  if (!m.tie_embeddings.empty()) {
    GPT_CHECK(m.tie_embeddings == "true" || m.tie_embeddings == "false",
              "config key 'model.tie_embeddings' must be true or false, got '" + m.tie_embeddings + "'");
    c.model.tie_embeddings = m.tie_embeddings == "true";
  }
  c.model.moe = m.moe;
  c.model.moe_every = m.moe_every;
  c.model.validate();
  auto positive = [](int64_t v, const char* key) {
    GPT_CHECK(v > 0, std::string("config key '") + key + "' must be positive, got " + std::to_string(v));
  };
  positive(c.micro_batch, "train.micro_batch");
  positive(c.seq_len, "train.seq_len");
  positive(c.grad_accum, "train.grad_accum");
  positive(c.steps, "train.steps");
  GPT_CHECK(c.seq_len <= c.model.block_size,
            "config key 'train.seq_len' (" + std::to_string(c.seq_len) + ") exceeds 'model.block_size' (" +
                std::to_string(c.model.block_size) + ")");
  parse_recompute(c.recompute);  // throws naming the key
  parse_spike_policy(c.on_spike);
  GPT_CHECK(c.spike_zscore >= 0, "config key 'train.spike_zscore' must be >= 0 (0 = only non-finite losses)");
  GPT_CHECK(c.spike_window >= 2, "config key 'train.spike_window' must be at least 2");
  GPT_CHECK(c.watchdog_k == 0 || c.watchdog_k > 1,
            "config key 'train.watchdog_k' must be 0 (off) or greater than 1, got " + shortest(c.watchdog_k));
  GPT_CHECK(c.watchdog_min_s >= 0, "config key 'train.watchdog_min_s' must be >= 0, got " + shortest(c.watchdog_min_s));
  parse_phase(c.debug_slow_phase, "debug.slow_phase");  // throws naming the key
  GPT_CHECK(c.debug_slow_s >= 0, "config key 'debug.slow_s' must be >= 0, got " + shortest(c.debug_slow_s));
  GPT_CHECK(c.dtype == "fp32" || c.dtype == "bf16",
            "config key 'train.dtype' must be fp32 or bf16, got '" + c.dtype + "'");
  GPT_CHECK(c.device == "cpu" || c.device == "cuda",
            "config key 'train.device' must be cpu or cuda, got '" + c.device + "'");

  GPT_CHECK(!c.sp || c.tp > 1, "config key 'parallel.sp' = true needs 'parallel.tp' > 1 (it shards over the "
                               "tensor-parallel ranks), got parallel.tp = " + std::to_string(c.tp));
  GPT_CHECK(!c.sp || int64_t(c.micro_batch) * c.seq_len % c.tp == 0,
            "config key 'parallel.sp': the " + std::to_string(int64_t(c.micro_batch) * c.seq_len) +
                " positions of a micro-batch (train.micro_batch x train.seq_len) do not split over parallel.tp = " +
                std::to_string(c.tp) + " ranks");
  GPT_CHECK(c.resume_from.empty() || c.init_from.empty(),
            "config keys 'run.resume_from' and 'run.init_from' exclude each other: resume the full state, or start from the parameters");
  GPT_CHECK(c.checkpoint_timeout_s > 0, "config key 'run.checkpoint_timeout_s' must be positive");
  GPT_CHECK(c.ep >= 1, "config key 'parallel.ep' must be at least 1, got " + std::to_string(c.ep));
  GPT_CHECK(c.ep == 1 || c.model.is_moe(),
            "config key 'parallel.ep' = " + std::to_string(c.ep) + " needs moe.experts > 0 (it splits the experts)");
  if (c.model.is_moe()) {
    GPT_CHECK(c.model.moe.experts % c.ep == 0, "config key 'parallel.ep' = " + std::to_string(c.ep) +
                                                   " does not divide moe.experts = " + std::to_string(c.model.moe.experts));
    // Under tensor parallelism every TP rank runs each MoE layer whole on the whole rows
    // (the router and experts replicated); sequence parallelism would hand it N / tp rows,
    // and routing groups are whole sequences.
    GPT_CHECK(!c.sp, "config key 'parallel.sp' = true is not supported with moe.experts > 0 for now (the MoE layer "
                     "routes whole sequences; sequence parallelism splits them over the TP ranks)");
    GPT_CHECK(c.device == "cpu", "config key 'moe.experts' > 0 needs train.device = cpu for now (the MoE layer has no CUDA path yet)");
    GPT_CHECK(c.dtype == "fp32", "config key 'moe.experts' > 0 needs train.dtype = fp32 for now (the MoE layer is fp32 only)");
    GPT_CHECK(c.recompute == "none",
              "config key 'train.recompute' must be none with moe.experts > 0 (MoE blocks keep every activation for now)");
  }

  std::ostringstream text;
  for (const auto& kv : vm)
    if (kv.first != "help" && kv.first != "config") text << kv.first << " = " << value_text(kv.second) << "\n";
  c.text = text.str();
  return true;
}

GPTConfig model_config_from_text(const std::string& text) {
  std::vector<std::string> args{"model_config"};
  // model.* and moe.* lines: the experts are part of the model's shape.
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find(" = ");
    if ((line.rfind("model.", 0) != 0 && line.rfind("moe.", 0) != 0) || eq == std::string::npos) continue;
    args.push_back("--" + line.substr(0, eq));
    args.push_back(line.substr(eq + 3));
  }
  // Only the model is wanted: a sequence of 1 passes the check against block_size.
  args.insert(args.end(), {"--train.seq_len", "1"});
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  TrainConfig c;
  parse_config(int(argv.size()), argv.data(), c);
  return c.model;
}

std::string model_config_text(const GPTConfig& m) {
  std::string text = "model.family = " + std::string(family_name(m.family)) +
                     "\nmodel.n_layer = " + std::to_string(m.n_layer) + "\nmodel.n_head = " + std::to_string(m.n_head) +
                     "\nmodel.n_embd = " + std::to_string(m.n_embd) + "\nmodel.vocab_size = " + std::to_string(m.vocab_size) +
                     "\nmodel.block_size = " + std::to_string(m.block_size) + "\n";
  if (m.family == ModelFamily::Llama)
    text += "model.n_kv_head = " + std::to_string(m.kv_heads()) + "\nmodel.ffn_hidden = " + std::to_string(m.ffn()) +
            "\nmodel.rope_theta = " + shortest(m.rope_theta) + "\nmodel.norm_eps = " + shortest(m.norm_eps) +
            "\nmodel.tie_embeddings = " + (m.tie_embeddings ? "true" : "false") + "\n";
  if (m.is_moe()) {
    const MoeConfig& e = m.moe;
    text += "moe.experts = " + std::to_string(e.experts) + "\nmoe.top_k = " + std::to_string(e.top_k) +
            "\nmoe.every = " + std::to_string(m.moe_every) + "\nmoe.expert_hidden = " + std::to_string(e.expert_hidden) +
            "\nmoe.shared_experts = " + std::to_string(e.shared_experts) +
            "\nmoe.capacity_factor = " + shortest(e.capacity_factor) +
            "\nmoe.group_tokens = " + std::to_string(e.group_tokens) + "\nmoe.aux_loss = " + shortest(e.aux_loss) +
            "\nmoe.z_loss = " + shortest(e.z_loss) + "\nmoe.renormalize = " + (e.renormalize ? "true" : "false") + "\n";
  }
  return text;
}

}  // namespace gpt
