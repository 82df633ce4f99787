#include "parallel/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel {
namespace {

int64_t bucket_elems_for(double bucket_mb) {
  GPT_CHECK(bucket_mb > 0, "dp.bucket_mb must be positive");
  return std::max<int64_t>(1, int64_t(bucket_mb * 1024.0 * 1024.0 / sizeof(float)));
}

}  // namespace

DataParallel::DataParallel(Communicator& comm, const Group& dp, ParamStore& store,
                           AdamWConfig opt, DPConfig cfg)
    : comm_(comm),
      dp_(dp),
      store_(store),
      cfg_(cfg),
      tracker_(store.total(), bucket_elems_for(cfg.bucket_mb)),
      shard_(cfg.zero1 ? shard_range(store.total(), dp.size(), dp.rank)
                       : ElemRange{0, store.total()}) {
  GPT_CHECK(store.flat_grads().defined(), "DataParallel needs a materialized ParamStore");
  GPT_CHECK(store.device() == comm.device(),
            std::string("DataParallel: parameters live on ") + device_name(store.device()) +
                " but the communicator moves " + device_name(comm.device()) + " tensors");
  adam_ = std::make_unique<AdamW>(store, opt, shard_.begin, shard_.end);
  if (cfg_.zero1) shard_grads_ = zeros({std::max<int64_t>(1, shard_.size())}, DType::F32, store.device());
  launched_.assign(size_t(tracker_.count()), false);
}

DataParallel::~DataParallel() {
  for (Model* m : models_) m->on_grads_ready = nullptr;
  for (CommHandle& h : pending_) h.wait();
}

void DataParallel::attach(Model& model) {
  models_.push_back(&model);
  model.on_grads_ready = [this](int64_t begin, int64_t end) {
    // A held-back range sits at one end of what a model reports (the tied embedding
    // is first or last in a stage's buffer): report the rest.
    if (held_back_.size() > 0 && begin < held_back_.end && held_back_.begin < end) {
      if (begin < held_back_.begin) on_grads_ready(begin, held_back_.begin);
      if (held_back_.end < end) on_grads_ready(held_back_.end, end);
      return;
    }
    on_grads_ready(begin, end);
  };
}

void DataParallel::begin_step() {
  tracker_.reset();
  std::fill(launched_.begin(), launched_.end(), false);
}

void DataParallel::begin_micro(bool last_micro) { last_micro_ = last_micro; }

void DataParallel::release(ElemRange range) {
  last_micro_ = true;
  on_grads_ready(range.begin, range.end);
}

void DataParallel::on_grads_ready(int64_t begin, int64_t end) {
  // Earlier micro-batches only accumulate: their gradients are not final yet.
  if (!last_micro_ || begin >= end) return;
  if (before_reduce_) before_reduce_(begin, end);
  if (dp_.size() == 1) return;
  const std::vector<int> done = tracker_.mark_ready(begin, end);
  if (!cfg_.overlap) return;  // the benchmark's baseline: reduce after backward
  for (int b : done) launch_bucket(b);
}

// Named by purpose: the reduction of one gradient bucket over the dp group.
void DataParallel::launch_bucket(int b) {
  const ElemRange r = tracker_.buckets()[size_t(b)];
  Tensor grads = store_.flat_grads().slice(r.begin, {r.size()});
  if (!cfg_.zero1) {
    pending_.push_back(comm_.allreduce_avg(grads, dp_));
  } else {
    // This rank's part of the bucket lands at its place in the shard buffer.
    const std::vector<int64_t> counts = shard_counts(r, store_.total(), dp_.size());
    const int64_t mine = counts[size_t(dp_.rank)];
    const int64_t at = mine > 0 ? std::max(r.begin, shard_.begin) - shard_.begin : 0;
    Tensor out = shard_grads_.slice(at, {mine});
    pending_.push_back(comm_.reduce_scatter(grads, out, counts, dp_));
  }
  launched_[size_t(b)] = true;
}

void DataParallel::wait_all() {
  for (CommHandle& h : pending_) h.wait();
  pending_.clear();
}

void DataParallel::finish_grads() {
  if (dp_.size() == 1) return;
  // Without overlap every bucket starts here; with it, any bucket the model never
  // reported (e.g. a parameter outside GPT's ranges) still starts, in bucket order on
  // every rank, so collective order stays identical across ranks.
  for (int b = 0; b < tracker_.count(); ++b)
    if (!launched_[size_t(b)]) launch_bucket(b);
  wait_all();
  if (cfg_.zero1 && shard_.size() > 0) {
    Tensor mine = store_.flat_grads().slice(shard_.begin, {shard_.size()});
    Tensor summed = shard_grads_.slice(0, {shard_.size()});
    copy_(mine, summed);
    ops_for(store_.device()).scale(mine, 1.f / float(dp_.size()));
  }
}

float DataParallel::clip_and_step(float lr, float max_norm) {
  const Ops& ops = ops_for(store_.device());
  Tensor grads = store_.flat_grads().slice(shard_.begin, {shard_.size()});
  double sum_squares = shard_.size() > 0 ? ops.sum_squares(grads) : 0.0;
  const bool tensor_parallel = tp_.size() > 1;
  // Under TP: the part of the sum that belongs to sharded parameters, which the other TP
  // ranks' slices complete; the rest is replicated and already whole.
  double split = 0.0;
  if (tensor_parallel)
    for (int i = 0; i < store_.size(); ++i) {
      const Param& p = store_.at(i);
      const bool elsewhere = pp_.size() > 1 && p.offset >= counted_elsewhere_.begin &&
                             p.offset + p.numel() <= counted_elsewhere_.end;
      if (p.shard.sharded() && !elsewhere) split += sum_squares_in(ElemRange{p.offset, p.offset + p.numel()});
    }
  // Under pipeline parallelism the head stage's copy of the tied embedding equals the
  // first stage's after their gradients were summed: it counts there only.
  if (pp_.size() > 1) sum_squares -= sum_squares_in(counted_elsewhere_);
  if (cfg_.zero1 && dp_.size() > 1) {
    // Global norm from the shards' sums of squares.
    std::vector<double> sums{sum_squares};
    if (tensor_parallel) sums.push_back(split);
    allreduce_sums(sums, dp_);
    sum_squares = sums[0];
    if (tensor_parallel) split = sums[1];
  }
  if (tensor_parallel) {
    std::vector<double> sums{split};
    allreduce_sums(sums, tp_);
    sum_squares += sums[0] - split;
  }
  if (pp_.size() > 1) {
    std::vector<double> sums{sum_squares};
    allreduce_sums(sums, pp_);
    sum_squares = sums[0];
  }
  const float norm = clip_grad_norm(grads, sum_squares, max_norm);
  // A NaN/inf gradient must never reach the parameters. The norm is global, so every
  // rank skips together; the caller decides what to do (the trainer stops).
  if (!std::isfinite(norm)) return norm;
  adam_->step(lr);
  if (cfg_.zero1 && dp_.size() > 1) {
    // Named by purpose: every rank's updated shard back to every rank.
    std::vector<int64_t> counts;
    for (int r = 0; r < dp_.size(); ++r)
      counts.push_back(shard_range(store_.total(), dp_.size(), r).size());
    comm_.allgather(store_.flat_values(), counts, dp_).wait();
  }
  return norm;
}

double DataParallel::sum_squares_in(ElemRange r) const {
  const int64_t lo = std::max(shard_.begin, r.begin), hi = std::min(shard_.end, r.end);
  if (lo >= hi) return 0.0;
  return ops_for(store_.device()).sum_squares(store_.flat_grads().slice(lo, {hi - lo}));
}

// Sent as float pairs (hi, lo) so the sums keep about double precision without a
// double tensor type.
void DataParallel::allreduce_sums(std::vector<double>& values, const Group& g) {
  std::vector<float> pairs;
  for (double v : values) pairs.push_back(float(v)), pairs.push_back(float(v - double(float(v))));
  Tensor t = zeros({int64_t(pairs.size())}, DType::F32, store_.device());
  from_host_f32(t, pairs.data());
  comm_.allreduce(t, g).wait();
  std::vector<float> host = to_host_f32(t);
  for (size_t i = 0; i < values.size(); ++i) values[i] = double(host[2 * i]) + double(host[2 * i + 1]);
}

float DataParallel::average_loss(float local_mean_loss) {
  if (dp_.size() == 1) return local_mean_loss;
  Tensor t = zeros({1}, DType::F32, store_.device());
  from_host_f32(t, &local_mean_loss);
  comm_.allreduce_avg(t, dp_).wait();
  return to_host_f32(t)[0];
}

std::string DataParallel::describe() const {
  char line[320];
  std::snprintf(line, sizeof(line),
                "data parallel: dp %d, ZeRO-1 %s, overlap %s, %d buckets of <= %.3g MiB; "
                "optimizer state %.2f MiB per rank (elements [%lld, %lld) of %lld)",
                dp_.size(), cfg_.zero1 ? "on" : "off", cfg_.overlap ? "on" : "off",
                tracker_.count(), cfg_.bucket_mb,
                double(optimizer_state_bytes()) / (1024.0 * 1024.0), (long long)shard_.begin,
                (long long)shard_.end, (long long)store_.total());
  return line;
}

}  // namespace gpt::parallel
