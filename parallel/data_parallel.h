// Data parallelism, wrapped around a single-device model from outside: gradients of
// the ParamStore's flat buffer are reduced in contiguous buckets, each starting as soon
// as GPT::on_grads_ready says its range is final, so communication overlaps the rest of
// backward. With zero1, buckets are reduce-scattered instead, each rank keeps AdamW
// moments for its shard of the buffer only, and parameters are all-gathered after the
// update.
//
// The trainer's step (dloss already divides by B*T*accum; DataParallel divides by dp):
//   store.zero_grads();
//   dp.begin_step();
//   for m in 0..accum-1:
//     dp.begin_micro(m == accum - 1);        // only the last micro-batch communicates
//     loss_sum += model.forward_train(acts, tokens, &targets, 1.f / (B*T*accum));
//     model.backward(acts, nullptr);
//   dp.finish_grads();                       // grads now averaged over the dp group
//   float norm = dp.clip_and_step(lr, max_norm);
//   float loss = dp.average_loss(loss_sum / accum);
// Every dp rank must call every method (they are collective over the dp group), and the
// dp ranks must hold identical parameters at the start (same seed, or a checkpoint).
//
// Expert parallelism: MoE experts are split over the ep ranks of each dp group, so the
// ranks holding the same expert values are the expert-data-parallel group (edp, dp / ep
// ranks), not dp. The ParamStore keeps the experts' parameters in a region of their own
// after every other one ([expert_begin(), total())), and each region is reduced, sharded
// (ZeRO-1) and gathered over its own group: the dense region over dp, the experts' over
// edp. Both are averaged over dp: an expert's gradient already sums the tokens of its ep
// ranks, so summing over edp and dividing by dp gives the mean over all dp ranks' tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/adamw.h"
#include "core/model/model.h"
#include "core/param_store.h"
#include "parallel/communicator.h"
#include "parallel/dp_buckets.h"

namespace gpt::parallel {

struct DPConfig {
  bool zero1 = false;     // shard optimizer moments over the dp group (ZeRO stage 1)
  bool overlap = true;    // start bucket reductions during backward (false: after it)
  double bucket_mb = 25;  // bucket size in MiB of F32 gradients
};

// The groups of the experts' region under expert parallelism: edp holds the same
// experts, ep the other experts of this dp group. Empty groups: edp = dp, ep of one rank.
struct ExpertGroups {
  Group edp, ep;
};

// A part of the flat buffer with its own reduction group (see above), and what this rank
// keeps of it.
struct DpRegion {
  std::string what;      // "dense" or "experts", for messages
  ElemRange range;       // flat elements
  Group group;           // the ranks holding the same values of the range
  bool sum_then_scale;   // experts: summed over `group`, then divided by dp
  BucketTracker tracker; // buckets of the range, offsets from range.begin
  ElemRange shard;       // flat elements this rank updates: its ZeRO-1 share, or the range
  std::unique_ptr<AdamW> adam;
  Tensor shard_grads;    // zero1: the reduce-scatter results for `shard`
  std::vector<bool> launched;
};

// What one rank writes to a checkpoint for one region, with the optimizer holding it.
struct CheckpointRange {
  ElemRange range;
  AdamW* adam;
};

class DataParallel {
 public:
  DataParallel(Communicator& comm, const Group& dp, ParamStore& store, AdamWConfig opt,
               DPConfig cfg, ExpertGroups experts = {});
  ~DataParallel();  // waits for reductions still in flight (their buffers are ours)
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Installs model.on_grads_ready; detach by destroying `this`. A pipeline rank holding
  // several model chunks (interleaving) attaches each.
  void attach(Model& model);
  // Under tensor parallelism: the other slices of this rank's sharded parameters live on
  // the ranks of `tp`, so the global grad norm sums their squares over it (replicated
  // parameters, equal on every TP rank, count once).
  void set_tensor_parallel_group(const Group& tp) { tp_ = tp; }
  // Under pipeline parallelism: the other stages' parameters live on the ranks of `pp`,
  // so the global grad norm sums over it; `counted_elsewhere` is a range of this rank's
  // buffer another stage also holds (the head's copy of the tied embedding), left out.
  void set_pipeline_group(const Group& pp, ElemRange counted_elsewhere) {
    pp_ = pp;
    counted_elsewhere_ = counted_elsewhere;
  }
  // Runs on each range of the flat buffer when its gradients are final for the step
  // (the last micro-batch reported it), before its bucket can start, on every layout
  // (dp = 1 too): sequence parallelism sums its norms' partial gradients over TP here
  // (parallel/tensor/sequence_grads.h).
  void set_before_reduce(std::function<void(int64_t begin, int64_t end)> f) { before_reduce_ = std::move(f); }
  // Gradients in `range` are not final when the model reports them (the tied embedding,
  // still to be summed across pipeline stages): their bucket waits for release(range),
  // which the caller makes during the last micro-batch's backward phase.
  void hold_back(ElemRange range) { held_back_ = range; }
  void release(ElemRange range);
  // At the start of every step, before the first micro-batch.
  void begin_step();
  // Before each micro-batch's backward: last = its gradients are final after it (the
  // buckets it completes are reduced); earlier micro-batches only accumulate.
  void begin_micro(bool last_micro);
  // After the last micro-batch's backward: waits for every bucket. Without zero1 the
  // whole flat grad buffer is averaged over dp; with zero1 only this rank's shard is.
  void finish_grads();
  // Global grad norm (across shards under zero1), clipping when max_norm > 0, AdamW on
  // the full buffer or this rank's shard, then (zero1) the parameter all-gather.
  // Returns the norm before clipping. A non-finite norm skips the update entirely.
  float clip_and_step(float lr, float max_norm);
  float average_loss(float local_mean_loss);  // mean over the dp group

  // What this rank writes to a checkpoint (core/checkpoint/sharded_checkpoint.h): per
  // region, its share shard_range(region, group size, group rank), whether or not ZeRO-1
  // is on, so the write load is spread evenly and nothing is gathered. The optimizer holds
  // moments for a superset of it (exactly it under ZeRO-1).
  std::vector<CheckpointRange> checkpoint_ranges();
  // One optimizer per region, all stepping together (same t).
  std::vector<AdamW*> optimizers();
  bool zero1() const { return cfg_.zero1; }

  size_t optimizer_state_bytes() const;
  std::string describe() const;  // one line for the start-up log (optimizer bytes/rank)
  // Every region's buckets, in flat offsets (dense first).
  std::vector<ElemRange> buckets() const;
  ElemRange shard() const { return regions_.front().shard; }  // the dense region's share
  const Group& group() const { return dp_; }

 private:
  void on_grads_ready(int64_t begin, int64_t end);
  void launch_bucket(DpRegion& region, int b);
  void wait_all();
  void add_region(std::string what, ElemRange range, const Group& group, bool sum_then_scale, AdamWConfig opt);

  Communicator& comm_;
  Group dp_;
  ParamStore& store_;
  DPConfig cfg_;
  Group ep_;                      // empty unless expert parallel
  std::vector<DpRegion> regions_; // dense, then the experts' (if the store has experts)
  std::vector<CommHandle> pending_;
  bool last_micro_ = true;
  std::vector<Model*> models_;
  Group tp_;  // empty unless tensor parallel
  Group pp_;  // empty unless pipeline parallel
  ElemRange counted_elsewhere_{0, 0}, held_back_{0, 0};
  std::function<void(int64_t, int64_t)> before_reduce_;
  // The part of sum((grad)^2) over this rank's shards that lies in `r`.
  double sum_squares_in(ElemRange r) const;
  // Sums each value over `g` in about double precision (a float hi/lo pair per value).
  void allreduce_sums(std::vector<double>& values, const Group& g);
};

}  // namespace gpt::parallel
