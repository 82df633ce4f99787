// The training loop of `pretrain`: micro-batches with gradient accumulation, warmup +
// cosine LR, clipping, validation, logging (stdout + metrics.jsonl), checkpoints and
// resume, and a text sample at the end.
#pragma once
#include <functional>
#include <map>
#include <memory>

#include "core/adamw.h"
#include "core/model/make_model.h"
#include "core/model/memory_plan.h"
#include "data/batch.h"
#include "launch/checkpoint_saver.h"
#include "launch/config.h"
#include "launch/metrics_log.h"
#include "launch/pipeline_runner.h"
#include "launch/spike_policy.h"
#include "launch/step_phases.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/expert/ep_exchange.h"
#include "parallel/process_groups.h"
#include "parallel/tensor/sequence_grads.h"
#include "parallel/tensor/tp_linear.h"
#include "parallel/topology.h"

namespace gpt {

class Trainer {
 public:
  // Collective: every rank of `comm` constructs a Trainer and calls run().
  Trainer(const TrainConfig& cfg, parallel::Communicator& comm);
  ~Trainer();
  void run();

  float last_loss() const { return last_loss_; }

 private:
  float train_step(int64_t step);
  void debug_fault(int64_t step);
  int64_t after_spike(int64_t step, double value, double z, const std::string& what);
  // The validation loss and, when the batches say which source each row came from, each
  // source's sum of loss x tokens and its tokens over every rank's rows.
  struct Validation {
    float loss = 0.f;
    std::vector<double> loss_tokens, tokens;  // [sources]
  };
  Validation evaluate();
  // What the run prints and records (launch/trainer_report.cpp).
  void print_run_header(int64_t start, int64_t tokens_per_step);
  void start_counting_bytes();  // the baseline of finish_run's bytes per group
  void log_step(int64_t step, int64_t start, float loss, float lr, float norm, double ms, int64_t tokens_per_step,
                bool updated, double tp_comm_ms);
  void finish_run(int64_t start, int64_t profiled_steps, double profiled_ms);
  void log_validation(int64_t step, const Validation& v);
  void print_op_profile(int64_t steps, double step_ms);
  void save_checkpoint(int64_t steps_done);
  int64_t load_checkpoint(const std::string& path, bool full_state);
  void prepare_run_dir(int64_t start);
  void print_sample();

  bool is_logger() const { return rank_ == 0; }
  bool pipelined() const { return pipeline_ != nullptr; }

  TrainConfig cfg_;
  parallel::Communicator& comm_;
  int rank_;
  parallel::Topology topo_;
  parallel::ProcessGroups groups_;
  Device device_;
  ParamStore store_;
  std::unique_ptr<parallel::TpRegion> tp_region_;            // tensor parallel only
  std::unique_ptr<parallel::TensorParallelPlan> tp_plan_;
  std::unique_ptr<parallel::EpExchange> ep_exchange_;  // expert parallel only
  std::unique_ptr<LinearFactory> whole_linears_;       // expert parallel without TP: carries ep_exchange_
  std::unique_ptr<parallel::NormGradSum> norm_grads_;       // sequence parallel only
  std::unique_ptr<Model> model_;       // the whole model (no pipeline)
  std::unique_ptr<Activations> acts_;  // one micro-batch in flight at a time
  std::unique_ptr<PipelineRunner> pipeline_;  // parallel.pp > 1: this rank's chunks
  std::vector<data::Batch> step_batches_;     // parallel.pp > 1: a step's micro-batches
  std::unique_ptr<parallel::DataParallel> dp_;
  std::unique_ptr<data::BatchSource> train_data_, val_data_;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<CheckpointSaver> saver_;
  data::Batch batch_;
  Tensor inputs_, targets_;
  MemoryPlan plan_;
  // The last step's wall time waiting for the gradient reduction after backward (the DP
  // communication not hidden behind it; without a pipeline), and in the update (norm,
  // clipping, AdamW, ZeRO-1's parameter all-gather): the step split the scaling
  // benchmark reads.
  double dp_wait_ms_ = 0, update_ms_ = 0;
  std::map<std::string, std::map<std::string, double>> bytes_before_;  // [group][op] at the first step
  std::vector<int64_t> val_start_;
  size_t memory_at_start_ = 0;
  float last_loss_ = 0.f;
  SpikeDetector spike_;
  bool spike_injected_ = false;  // debug.spike_step fired
  int64_t tokens_seen_ = 0;
  MoeStepStats moe_step_;  // the last step's, over every data-parallel rank
  // Last, so that the watchdog's thread stops before log_, which it writes to, goes.
  StepPhases phases_;
};

}  // namespace gpt
