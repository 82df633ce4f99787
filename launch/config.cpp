#include "launch/config.h"

#include <boost/program_options.hpp>
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
};

po::options_description describe(TrainConfig& c, ModelOverrides& m) {
  po::options_description d("Configuration keys (INI sections in the config file, --section.key on the command line)");
  auto add = d.add_options();
  add("model.preset", po::value(&c.model_preset)->default_value(c.model_preset),
      "tiny | gpt2-124M | gpt2-350M | gpt2-774M | gpt2-1.5B");
  add("model.n_layer", po::value(&m.n_layer), "transformer blocks (overrides the preset)");
  add("model.n_head", po::value(&m.n_head), "attention heads (overrides the preset)");
  add("model.n_embd", po::value(&m.n_embd), "model width (overrides the preset)");
  add("model.vocab_size", po::value(&m.vocab_size), "vocabulary size (overrides the preset)");
  add("model.block_size", po::value(&m.block_size), "maximum sequence length (overrides the preset)");
  add("train.seed", po::value(&c.seed)->default_value(c.seed), "seed for init and data order");
  add("train.micro_batch", po::value(&c.micro_batch)->default_value(c.micro_batch), "sequences per micro-batch per rank");
  add("train.seq_len", po::value(&c.seq_len)->default_value(c.seq_len), "tokens per sequence (T)");
  add("train.grad_accum", po::value(&c.grad_accum)->default_value(c.grad_accum), "micro-batches per step per rank");
  add("train.steps", po::value(&c.steps)->default_value(c.steps), "optimizer steps");
  add("train.lr", po::value(&c.lr)->default_value(c.lr), "peak learning rate");
  add("train.min_lr", po::value(&c.min_lr)->default_value(c.min_lr), "final learning rate of the cosine");
  add("train.warmup", po::value(&c.warmup)->default_value(c.warmup), "linear warmup steps");
  add("train.weight_decay", po::value(&c.weight_decay)->default_value(c.weight_decay), "AdamW decoupled weight decay (matmul weights only)");
  add("train.beta1", po::value(&c.beta1)->default_value(c.beta1), "AdamW beta1");
  add("train.beta2", po::value(&c.beta2)->default_value(c.beta2), "AdamW beta2");
  add("train.eps", po::value(&c.eps)->default_value(c.eps), "AdamW epsilon");
  add("train.grad_clip", po::value(&c.grad_clip)->default_value(c.grad_clip), "global grad-norm clip; 0 = off");
  add("train.threads", po::value(&c.threads)->default_value(c.threads), "CPU threads per rank; 0 = all cores");
  add("train.device", po::value(&c.device)->default_value(c.device), "cpu | cuda");
  add("train.dtype", po::value(&c.dtype)->default_value(c.dtype), "fp32 | bf16 (mixed precision: bf16 activations and weight copies, fp32 master weights, grads and optimizer)");
  add("train.profile_ops", po::value(&c.profile_ops)->default_value(c.profile_ops),
      "time every op (synchronising around each, so steps run slower) and print where the steps go");
  add("train.plan_only", po::value(&c.plan_only)->default_value(c.plan_only),
      "print the memory plan per rank under each recompute mode and exit: no data, no device, "
      "no training (does the run fit?)");
  add("train.recompute", po::value(&c.recompute)->default_value(c.recompute), "activation recomputation: none | selective | full");
  add("eval.every", po::value(&c.eval_every)->default_value(c.eval_every), "validation every N steps; 0 = never");
  add("eval.steps", po::value(&c.eval_steps)->default_value(c.eval_steps), "validation micro-batches");
  add("data.mixture", po::value(&c.data_mixture)->default_value(c.data_mixture), "mixture config; empty = synthetic tokens");
  add("data.tokenizer_dir", po::value(&c.tokenizer_dir)->default_value(c.tokenizer_dir), "folder with GPT-2's encoder.json and vocab.bpe");
  add("run.dir", po::value(&c.run_dir)->default_value(c.run_dir), "output folder: metrics.jsonl and checkpoints");
  add("run.checkpoint_every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every), "checkpoint every N steps; 0 = never");
  add("run.save_final", po::value(&c.save_final)->default_value(c.save_final), "checkpoint after the last step");
  add("run.keep", po::value(&c.keep_checkpoints)->default_value(c.keep_checkpoints), "checkpoints kept (oldest deleted)");
  add("run.resume", po::value(&c.resume)->default_value(c.resume), "resume from the latest checkpoint in run.dir");
  add("run.resume_from", po::value(&c.resume_from)->default_value(c.resume_from),
      "resume the full state (parameters, optimizer, step, data) from this checkpoint directory or consolidated .h5");
  add("run.init_from", po::value(&c.init_from)->default_value(c.init_from),
      "start from the parameters of this checkpoint (directory or .h5) with a fresh optimizer at step 0");
  add("run.async_checkpoint", po::value(&c.async_checkpoint)->default_value(c.async_checkpoint),
      "write checkpoints on a background thread from a host copy while training continues");
  add("run.checkpoint_timeout_s", po::value(&c.checkpoint_timeout_s)->default_value(c.checkpoint_timeout_s),
      "abort when ranks have not all finished writing a checkpoint after this long");
  add("run.log_every", po::value(&c.log_every)->default_value(c.log_every), "print a step line every N steps");
  add("sample.tokens", po::value(&c.sample_tokens)->default_value(c.sample_tokens), "tokens to generate after training; 0 = none");
  add("sample.temperature", po::value(&c.sample_temperature)->default_value(c.sample_temperature), "sampling temperature");
  add("sample.top_k", po::value(&c.sample_top_k)->default_value(c.sample_top_k), "sample from the k most likely tokens; 0 = all");
  add("sample.prompt", po::value(&c.sample_prompt)->default_value(c.sample_prompt), "text the sample starts from");
  add("sample.checkpoint", po::value(&c.sample_checkpoint)->default_value(c.sample_checkpoint), "checkpoint the sample program loads (default: the latest in run.dir)");
  add("parallel.tp", po::value(&c.tp)->default_value(c.tp),
      "tensor-parallel ranks per model (Megatron-style: heads and MLP split, adjacent ranks); "
      "data parallelism takes world / tp");
  add("parallel.zero1", po::value(&c.zero1)->default_value(c.zero1), "shard AdamW state across data-parallel ranks");
  add("parallel.overlap", po::value(&c.dp_overlap)->default_value(c.dp_overlap), "overlap gradient all-reduce with backward");
  add("parallel.bucket_mb", po::value(&c.bucket_mb)->default_value(c.bucket_mb), "gradient bucket size in MB");
  add("parallel.timeout_s", po::value(&c.comm_timeout_s)->default_value(c.comm_timeout_s), "abort when a collective takes longer");
  add("debug.nan_step", po::value(&c.debug_nan_step)->default_value(c.debug_nan_step), "inject a NaN loss at this step, counted from 1 as in the log (testing)");
  add("debug.nan_grad_step", po::value(&c.debug_nan_grad_step)->default_value(c.debug_nan_grad_step), "inject a NaN gradient with a finite loss at this step (testing)");
  add("debug.exit_step", po::value(&c.debug_exit_step)->default_value(c.debug_exit_step), "debug.exit_rank exits at this step (testing)");
  add("debug.exit_rank", po::value(&c.debug_exit_rank)->default_value(c.debug_exit_rank), "rank that exits (testing)");
  add("debug.save_delay_ms", po::value(&c.debug_save_delay_ms)->default_value(c.debug_save_delay_ms), "sleep between checkpoint piece writes (testing)");
  return d;
}

std::string value_text(const po::variable_value& v) {
  const boost::any& a = v.value();
  std::ostringstream os;
  if (auto p = boost::any_cast<std::string>(&a)) os << *p;
  else if (auto p = boost::any_cast<int>(&a)) os << *p;
  else if (auto p = boost::any_cast<int64_t>(&a)) os << *p;
  else if (auto p = boost::any_cast<uint64_t>(&a)) os << *p;
  else if (auto p = boost::any_cast<float>(&a)) os << *p;
  else if (auto p = boost::any_cast<double>(&a)) os << *p;
  else if (auto p = boost::any_cast<bool>(&a)) os << (*p ? "true" : "false");
  return os.str();
}

}  // namespace

bool parse_config(int argc, char** argv, TrainConfig& c) {
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
      std::ifstream in(path);
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
  GPT_CHECK(c.dtype == "fp32" || c.dtype == "bf16",
            "config key 'train.dtype' must be fp32 or bf16, got '" + c.dtype + "'");
  GPT_CHECK(c.device == "cpu" || c.device == "cuda",
            "config key 'train.device' must be cpu or cuda, got '" + c.device + "'");

  GPT_CHECK(c.resume_from.empty() || c.init_from.empty(),
            "config keys 'run.resume_from' and 'run.init_from' exclude each other: resume the full state, or start from the parameters");
  GPT_CHECK(c.checkpoint_timeout_s > 0, "config key 'run.checkpoint_timeout_s' must be positive");

  std::ostringstream text;
  for (const auto& kv : vm)
    if (kv.first != "help" && kv.first != "config") text << kv.first << " = " << value_text(kv.second) << "\n";
  c.text = text.str();
  return true;
}

GPTConfig model_config_from_text(const std::string& text) {
  std::vector<std::string> args{"model_config"};
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find(" = ");
    if (line.rfind("model.", 0) != 0 || eq == std::string::npos) continue;
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
  return "model.n_layer = " + std::to_string(m.n_layer) + "\nmodel.n_head = " + std::to_string(m.n_head) +
         "\nmodel.n_embd = " + std::to_string(m.n_embd) + "\nmodel.vocab_size = " + std::to_string(m.vocab_size) +
         "\nmodel.block_size = " + std::to_string(m.block_size) + "\n";
}

}  // namespace gpt
