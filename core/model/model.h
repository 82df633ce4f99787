// The model interface the trainer and parallel/ talk to, whatever the model family.
//
// A model object is one stage of the whole network: the layers [layer_begin, layer_end),
// with or without the token embedding in front and the final norm + LM head behind. The
// whole model is the range [0, L) with both ends; a pipeline builds one stage per rank.
// Layer parameters keep their global names ("blocks.<global index>...") on every stage,
// so checkpoints do not depend on how the layers were cut.
//
// Forward and backward run against an explicit Activations object: everything one
// micro-batch's forward leaves for its backward lives there, so several micro-batches
// can be in flight at once (forward of 0, 1, 2, then backward of 1, 0, 2) and each is
// freed by dropping its object. Scratch used only inside one call (logits chunks,
// backward gradients, recomputation buffers) stays in the model and is shared.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/model/gpt_config.h"
#include "core/tensor.h"

namespace gpt {

struct StageSpec {
  int layer_begin = 0;
  int layer_end = -1;  // -1: the last layer (n_layer)
  bool embedding = true;  // this stage owns the token (and position) embedding
  bool head = true;       // this stage owns the final norm, the head and the loss
};

// One micro-batch's saved state. Model families derive their own; the two tensors that a
// pipeline hands between stages are common to all.
struct Activations {
  virtual ~Activations() = default;
  // After forward on a stage without the head: its output [B, T, C] (what the next stage
  // takes as input). After forward on a head stage without targets: the logits of the
  // vocabulary columns this stage computes, [B, T, V] whole or [B, T, Vs] for a tensor-
  // parallel rank's slice (GPT::vocabulary_logits gives a whole row).
  Tensor output;
  // After backward on a stage without the embedding: d(input) [B, T, C].
  Tensor input_grad;
};

// One MoE layer's load over some micro-batches: kept assignments per expert, and the
// assignments capacity dropped out of all (tokens x top_k).
struct MoeLayerLoad {
  int layer = 0;  // global block index
  std::vector<int64_t> tokens_per_expert;
  int64_t dropped = 0, assignments = 0;
};

// The mixture-of-experts side of the training forwards since the last take_moe_stats():
// the auxiliary losses (already times their coefficients: what training adds to the
// loss), summed over MoE blocks and micro-batches, and each MoE layer's load, summed.
struct MoeStepStats {
  double aux_loss = 0, z_loss = 0;
  int64_t micro_batches = 0;
  std::vector<MoeLayerLoad> layers;  // in layer order
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const StageSpec& stage() const = 0;
  virtual Device device() const = 0;
  virtual std::unique_ptr<Activations> make_activations() const = 0;

  // The training forward of one micro-batch into `acts`.
  //   input:   tokens I32 [B, T] when stage().embedding, else the previous stage's output.
  //   targets: I32 [B, T] when stage().head (ignored otherwise).
  //   dloss:   the loss gradient per position (1/(B*T*accum) for the mean over a step).
  // On a head stage returns the mean cross-entropy over the B*T positions and has
  // already pushed sum_i dloss * loss_i back through the head (no [B, T, V] tensor
  // exists); elsewhere returns NaN and acts.output holds the stage output.
  virtual float forward_train(Activations& acts, const Tensor& input, const Tensor* targets,
                              float dloss) = 0;
  // Accumulates the parameter gradients of the micro-batch in `acts`. dout: d(output)
  // [B, T, C] on a stage without the head (null on a head stage). On a stage without the
  // embedding acts.input_grad then holds d(input).
  virtual void backward(Activations& acts, const Tensor* dout) = 0;
  // Backward split in two for zero-bubble pipelines (Qi et al. 2023): backward_input
  // does what backward does except the layers' weight-gradient GEMMs, so acts.input_grad
  // is ready to send as early as possible; backward_weight(acts) adds those gradients
  // later, before acts is dropped. Together they equal backward(). A model that cannot
  // split says so by throwing.
  virtual void backward_input(Activations& acts, const Tensor* dout);
  // Under sequence parallelism a stage without the embedding is handed only its rows of
  // the residual stream, which do not say B and T: the pipeline tells the model here.
  // Families without sequence-parallel support ignore it (the trainer refuses SP).
  virtual void set_micro_batch(int64_t B, int64_t T) {
    (void)B;
    (void)T;
  }
  virtual void backward_weight(Activations& acts);
  // Evaluation: with the head and targets the mean loss; with the head and no targets
  // the logits into acts.output; without the head the stage output. No gradients.
  virtual float forward(Activations& acts, const Tensor& input, const Tensor* targets) = 0;
  // After forward or forward_train with targets on a head stage: the mean loss of each
  // row (sequence) of that micro-batch, B values on the host, in the order of the rows of
  // targets [B, T]. A trainer groups them by where each row came from (per-source
  // validation). Empty where a model does not keep them.
  virtual std::vector<double> row_losses() const { return {}; }
  // The MoE statistics of this stage's forward_train calls since the last call, which
  // starts the next sum (the trainer takes them once per step). Empty for dense models.
  virtual MoeStepStats take_moe_stats() { return {}; }

  // The shape this model was built from (its family included).
  virtual const GPTConfig& config() const = 0;
  // After forward() without targets on a head stage, the logits of flat position
  // b*T + t over the whole vocabulary (V values, on the host), whatever slice of them
  // this model computed. Under tensor parallelism a collective over the TP group.
  virtual std::vector<float> vocabulary_logits(const Activations& acts, int64_t position) const = 0;
  // Rows of logits the head makes at once (0: head_chunk_rows(), the default).
  virtual void set_head_chunk_rows(int64_t rows) = 0;

  // Called during backward each time the gradients of a contiguous range of the flat
  // parameter buffer are final for this micro-batch, in reverse layer order (data
  // parallelism starts its bucket reductions here).
  std::function<void(int64_t begin, int64_t end)> on_grads_ready;
};

inline void Model::backward_input(Activations&, const Tensor*) {
  fail("this model cannot split its backward into input and weight passes (parallel.schedule = zb-h1)");
}
inline void Model::backward_weight(Activations&) {
  fail("this model cannot split its backward into input and weight passes (parallel.schedule = zb-h1)");
}

}  // namespace gpt
