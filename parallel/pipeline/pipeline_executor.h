// Runs one rank's pipeline schedule (schedule.h) on its model chunks: computes in list
// order, moves activations and their gradients to and from the neighbouring stages with
// asynchronous point-to-point messages through the Communicator, and records a timeline
// of every action.
//
// Messages: shapes are known ahead ([B, T, C] in the activation dtype), so there is no
// shape handshake. Tag 2c (+1 for a gradient) for what chunk c sends; per pair and tag, messages
// go in micro-batch order, which MPI and NCCL keep. Each receive is posted one compute
// action ahead of the compute that needs it, so the transfer overlaps that compute;
// sends are never waited for until their buffer is needed again.
//
// Buffers are reused: each chunk keeps a pool of Activations (one per micro-batch in
// flight, so 1F1B holds at most p - rank of them and GPipe m) and a pool of receive
// buffers. An Activations object whose output or input gradient is still being sent
// goes back to the pool with that send's handle and is reused only after it completes.
//
// Streams (CUDA): every message is issued on the communicator, whose device
// implementation (NCCL) orders it after the compute queued so far and runs it on its own
// stream; waiting on its handle makes the compute stream wait for it. Activations and
// gradients travel on the "pp" group's communicator while data-parallel buckets use
// the "dp" group's, so on NCCL a bucket reduction never sits in front of a stage's
// activation on one queue; on the MPI communicator both are non-blocking requests that
// one progress thread drives side by side.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "parallel/communicator.h"
#include "parallel/pipeline/schedule.h"

namespace gpt::parallel::pipeline {

// One timed action of a step, for the Chrome-trace timeline and the bubble.
struct TimedAction {
  Action action;
  double start_ms, end_ms;  // from the start of the step
};

// What the executor asks its owner for, per micro-batch and pass.
struct StepHooks {
  // The inputs of micro-batch m: tokens I32 [B, T] for chunk 0, targets I32 [B, T] for
  // the last chunk (the pointer is null when this rank needs no such tensor).
  std::function<void(int micro, Tensor* tokens, Tensor* targets)> load;
  // Before the backward pass of (micro, chunk); last = no later backward on this chunk
  // in this step (data parallelism communicates then).
  std::function<void(int micro, int chunk, bool last)> before_backward;
  // evaluate(), on the last chunk's rank after micro-batch m's forward (optional): the
  // model that computed its loss (Model::row_losses() gives the rows').
  std::function<void(int micro, const Model& head)> after_loss;
  // After each compute action (optional; fault-injection tests stop a stage here).
  std::function<void(const Action& done)> after_compute;
  // Before each compute action, and before waiting for a message: then `next` is the
  // RecvAct or RecvGrad of the compute about to run (optional; the trainer's watchdog
  // tracks which phase a stage is in by it).
  std::function<void(const Action& next)> before;
};

class PipelineExecutor {
 public:
  // chunks[i] is global chunk rank + i * stages (model.h's stage of that range); pp is
  // this rank's pipeline group (group rank = stage). B, T, C, act: the tensors handed
  // between stages, [B, T, C]; or, when rows > 0 (sequence parallelism), this rank's
  // [rows, C] shard of them.
  PipelineExecutor(Communicator& comm, const Group& pp, PipelineShape shape,
                   std::vector<Model*> chunks, int64_t B, int64_t T, int64_t C, DType act,
                   int64_t rows = 0);
  ~PipelineExecutor();  // waits for sends still in flight

  // One training step: runs `actions`, returns the sum over micro-batches of the mean
  // loss on the rank holding the last chunk (0 elsewhere). dloss as in Model::forward_train.
  double train_step(const std::vector<Action>& actions, float dloss, const StepHooks& hooks);
  // Evaluation of `micro_batches` micro-batches through every chunk, forward only;
  // returns the sum of their mean losses on the last chunk's rank (0 elsewhere).
  double evaluate(int micro_batches, const StepHooks& hooks);

  // The last train_step's timeline, and its compute time / wall time.
  const std::vector<TimedAction>& timeline() const { return timeline_; }
  double last_step_ms() const { return step_ms_; }
  double last_busy_ms() const;

 private:
  using Key = std::pair<int, int>;  // (micro, chunk)

  Model& model_of(int chunk) const;
  int local_index(int chunk) const { return chunk / shape_.stages; }
  int tag(int chunk, bool grad) const { return 2 * chunk + (grad ? 1 : 0); }
  bool first_chunk(int chunk) const { return chunk == 0; }
  bool last_chunk(int chunk) const { return chunk == shape_.chunks() - 1; }

  std::unique_ptr<Activations> take_activations(int chunk);
  // Back to its chunk's pool once the sends still reading it complete.
  void give_back(int chunk, std::unique_ptr<Activations> acts, std::vector<CommHandle> sends);
  void release_if_done(const Key& key);
  Tensor take_buffer();
  void post_receive(const Action& a);
  Tensor wait_receive(Op op, int micro, int chunk);

  Communicator& comm_;
  Group pp_;
  PipelineShape shape_;
  std::vector<Model*> chunks_;
  Shape act_shape_;    // what stages hand each other
  int64_t B_, T_;      // the micro-batch: tokens and targets are [B, T]
  DType act_dtype_;
  Device device_;

  struct Pooled {
    std::unique_ptr<Activations> acts;
    std::vector<CommHandle> sends;  // still reading acts' tensors
  };
  std::vector<std::vector<Pooled>> pool_;  // per local chunk
  std::vector<Tensor> buffers_;            // free receive buffers
  std::map<Key, std::unique_ptr<Activations>> held_;
  std::map<std::pair<Op, Key>, std::pair<Tensor, CommHandle>> received_;
  std::map<Key, std::vector<CommHandle>> sends_;  // sends reading held activations
  std::vector<Tensor> tokens_, targets_;          // per micro-batch, reused across steps
  std::set<Key> input_grad_done_, weights_done_, grad_sent_;  // progress of held micro-batches

  std::vector<TimedAction> timeline_;
  double step_ms_ = 0;
};

}  // namespace gpt::parallel::pipeline
