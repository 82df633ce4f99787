// The trainer's pipeline-parallel side (parallel.pp > 1): builds this rank's model
// chunks, runs each step's schedule through the executor, sums the tied embedding's
// gradients across the first and last stage, and brings the loss and the validation
// loss from the last stage to every rank of the pipeline.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/layers/linear.h"
#include "core/model/make_model.h"
#include "core/model/memory_plan.h"
#include "data/batch.h"
#include "launch/config.h"
#include "launch/step_phases.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/pipeline/pipeline_executor.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stage_split.h"
#include "parallel/process_groups.h"
#include "parallel/topology.h"

namespace gpt {

// The layer range of every chunk for this configuration (parallel.layers_per_stage, or
// balanced with the head's cost counted; parallel/layout_memory.h, which the memory plan
// reads too); throws naming the key when the layers cannot be cut that way.
std::vector<parallel::pipeline::LayerRange> pipeline_chunk_layers(const TrainConfig& cfg);


class PipelineRunner {
 public:
  // Collective over the world (creates the embedding group). Registers this rank's
  // chunks' parameters in `store`, in chunk order.
  PipelineRunner(const TrainConfig& cfg, parallel::Communicator& comm, const parallel::Topology& topo,
                 const parallel::ProcessGroups& groups, ParamStore& store, Recompute recompute,
                 const LinearFactory* linears);
  ~PipelineRunner();

  // After the store is materialized and DataParallel built over it.
  void attach(parallel::DataParallel& dp);

  // One step over `batches` (grad_accum micro-batches of [B, T+1] tokens, the same on
  // every stage): forward and backward through the schedule, the tied embedding summed
  // across stages, the data-parallel reduction finished. Returns the mean loss over the
  // micro-batches, on every rank of the pipeline.
  // `mid_step` (optional) runs once after this rank's first compute of the step.
  // `phases` (optional) is told each phase this rank enters: forward, backward, and
  // communication while it waits for a neighbour's message or for the step's reductions.
  float train_step(const std::vector<data::Batch>& batches, float dloss, parallel::DataParallel& dp,
                   const std::function<void()>& mid_step = {}, StepPhases* phases = nullptr);
  // The mean loss of `batches` through the pipeline, forward only, on every rank.
  // row_losses: when given, every micro-batch's Model::row_losses() in order (B per
  // micro-batch) on the last stage's ranks; left empty on the other stages.
  float evaluate(const std::vector<data::Batch>& batches, std::vector<double>* row_losses = nullptr);
  // `values` of the last stage's ranks on every rank of the pp group (each rank passes a
  // vector of the same length).
  std::vector<double> from_last_stage(const std::vector<double>& values);

  // Writes the last step's per-rank timeline as one Chrome-trace JSON on rank 0 of the
  // world (collective over the world).
  void write_timeline(const std::string& path);
  // The idle fraction of the pipeline over the steps so far after the first (the last
  // 1000 of them): 1 - the stages' compute time / (stages x the pipeline's step time,
  // the slowest stage's, since every stage starts a step together after the previous
  // step's grad-norm all-reduce). Collective over the pp group.
  double measured_bubble();
  double formula_bubble() const;
  // `value` from every stage, in stage order (collective over the pp group).
  std::vector<double> per_stage(double value);
  // This stage's peak of device memory above what it held once its parameters,
  // gradients and optimizer state existed (attach()): activations and scratch, in MiB.
  double activation_peak_mib() const;
  std::string describe() const;  // one line for the start-up log

  std::vector<Model*> chunks() const;

 private:
  float from_last_stage(double value);  // broadcast over the pp group
  void sum_tied_embedding();

  const TrainConfig& cfg_;
  parallel::Communicator& comm_;
  const parallel::Topology& topo_;
  parallel::Group pp_, embed_;
  ParamStore& store_;
  parallel::pipeline::ScheduleKind kind_;
  parallel::pipeline::PipelineShape shape_;
  std::vector<parallel::pipeline::LayerRange> layers_;  // per global chunk
  std::vector<std::unique_ptr<Model>> models_;
  std::vector<parallel::pipeline::Action> actions_;
  std::unique_ptr<parallel::pipeline::PipelineExecutor> executor_;
  Param* tied_ = nullptr;  // this rank's wte on the first or last stage of a tied head (pp > 1)
  std::vector<double> busy_ms_, step_ms_;  // per step after the first, this stage's
  int steps_ = 0;
  size_t base_bytes_ = 0;  // memory held after attach()
};

}  // namespace gpt
