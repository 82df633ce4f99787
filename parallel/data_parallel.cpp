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
                           AdamWConfig opt, DPConfig cfg, ExpertGroups experts)
    : comm_(comm), dp_(dp), store_(store), cfg_(cfg), ep_(experts.ep) {
  GPT_CHECK(store.flat_grads().defined(), "DataParallel needs a materialized ParamStore");
  GPT_CHECK(store.device() == comm.device(),
            std::string("DataParallel: parameters live on ") + device_name(store.device()) +
                " but the communicator moves " + device_name(comm.device()) + " tensors");
  const Group& edp = experts.edp.size() > 0 ? experts.edp : dp;
  GPT_CHECK(edp.size() * std::max(1, ep_.size()) == dp.size(),
            "DataParallel: expert-data-parallel group " + edp.describe() + " times expert-parallel group " +
                ep_.describe() + " is not the data-parallel group " + dp.describe());
  add_region("dense", ElemRange{0, store.expert_begin()}, dp, /*sum_then_scale=*/false, opt);
  if (store.expert_total() > 0)
    add_region("experts", ElemRange{store.expert_begin(), store.total()}, edp, /*sum_then_scale=*/true, opt);
}

void DataParallel::add_region(std::string what, ElemRange range, const Group& group, bool sum_then_scale,
                              AdamWConfig opt) {
  const ElemRange in_region = shard_range(range.size(), group.size(), group.rank);
  const ElemRange shard = cfg_.zero1 ? ElemRange{range.begin + in_region.begin, range.begin + in_region.end} : range;
  DpRegion r{std::move(what), range, group, sum_then_scale,
             BucketTracker(range.size(), bucket_elems_for(cfg_.bucket_mb)), shard,
             std::make_unique<AdamW>(store_, opt, shard.begin, shard.end), Tensor(), {}};
  if (cfg_.zero1) r.shard_grads = zeros({std::max<int64_t>(1, shard.size())}, DType::F32, store_.device());
  r.launched.assign(size_t(r.tracker.count()), false);
  regions_.push_back(std::move(r));
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
  for (DpRegion& r : regions_) {
    r.tracker.reset();
    std::fill(r.launched.begin(), r.launched.end(), false);
  }
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
  for (DpRegion& r : regions_) {
    const int64_t lo = std::max(begin, r.range.begin), hi = std::min(end, r.range.end);
    if (lo >= hi) continue;
    const std::vector<int> done = r.tracker.mark_ready(lo - r.range.begin, hi - r.range.begin);
    if (!cfg_.overlap) continue;  // the benchmark's baseline: reduce after backward
    for (int b : done) launch_bucket(r, b);
  }
}

// Named by purpose: the reduction of one gradient bucket over its region's group.
void DataParallel::launch_bucket(DpRegion& region, int b) {
  region.launched[size_t(b)] = true;
  const Group& g = region.group;
  if (g.size() == 1) return;  // experts with ep = dp: nobody else holds them (scaled in finish_grads)
  const ElemRange rel = region.tracker.buckets()[size_t(b)];
  const ElemRange r{region.range.begin + rel.begin, region.range.begin + rel.end};
  Tensor grads = store_.flat_grads().slice(r.begin, {r.size()});
  if (!cfg_.zero1) {
    pending_.push_back(region.sum_then_scale ? comm_.allreduce(grads, g) : comm_.allreduce_avg(grads, g));
  } else {
    // This rank's part of the bucket lands at its place in the shard buffer.
    const std::vector<int64_t> counts = shard_counts(rel, region.range.size(), g.size());
    const int64_t mine = counts[size_t(g.rank)];
    const int64_t at = mine > 0 ? std::max(r.begin, region.shard.begin) - region.shard.begin : 0;
    Tensor out = region.shard_grads.slice(at, {mine});
    pending_.push_back(comm_.reduce_scatter(grads, out, counts, g));
  }
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
  for (DpRegion& r : regions_)
    for (int b = 0; b < r.tracker.count(); ++b)
      if (!r.launched[size_t(b)]) launch_bucket(r, b);
  wait_all();
  const Ops& ops = ops_for(store_.device());
  const float mean = 1.f / float(dp_.size());
  for (DpRegion& r : regions_) {
    if (r.shard.size() == 0) continue;
    Tensor mine = store_.flat_grads().slice(r.shard.begin, {r.shard.size()});
    if (cfg_.zero1 && r.group.size() > 1) {
      copy_(mine, r.shard_grads.slice(0, {r.shard.size()}));
      ops.scale(mine, mean);
    } else if (r.sum_then_scale) {
      ops.scale(mine, mean);  // summed over the group (or alone in it): now the mean over dp
    }
  }
}

float DataParallel::clip_and_step(float lr, float max_norm) {
  const Ops& ops = ops_for(store_.device());
  const bool tensor_parallel = tp_.size() > 1;
  // Per region: the sum of squares over this rank's shard and, under TP, the part of it
  // in sharded parameters, which the other TP ranks' slices complete (the rest is
  // replicated over TP and already whole). Experts are whole on every TP rank.
  double sum_squares = 0.0, split = 0.0;
  for (DpRegion& r : regions_) {
    double sq = r.shard.size() > 0 ? ops.sum_squares(store_.flat_grads().slice(r.shard.begin, {r.shard.size()})) : 0.0;
    double part = 0.0;
    if (tensor_parallel)
      for (int i = 0; i < store_.size(); ++i) {
        const Param& p = store_.at(i);
        const bool elsewhere = pp_.size() > 1 && p.offset >= counted_elsewhere_.begin &&
                               p.offset + p.numel() <= counted_elsewhere_.end;
        if (p.shard.sharded() && !p.expert && !elsewhere && p.offset >= r.range.begin && p.offset < r.range.end)
          part += sum_squares_in(ElemRange{p.offset, p.offset + p.numel()});
      }
    // Under pipeline parallelism the head stage's copy of the tied embedding equals the
    // first stage's after their gradients were summed: it counts there only.
    if (pp_.size() > 1) {
      const int64_t lo = std::max(r.range.begin, counted_elsewhere_.begin), hi = std::min(r.range.end, counted_elsewhere_.end);
      if (lo < hi) sq -= sum_squares_in(ElemRange{lo, hi});
    }
    std::vector<double> sums{sq};
    if (tensor_parallel) sums.push_back(part);
    // The shards of the region's group together hold the region.
    if (cfg_.zero1 && r.group.size() > 1) allreduce_sums(sums, r.group);
    // The other ep ranks hold the other experts.
    if (r.sum_then_scale && ep_.size() > 1) allreduce_sums(sums, ep_);
    sum_squares += sums[0];
    if (tensor_parallel) split += sums[1];
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
  float norm = 0.f;
  for (DpRegion& r : regions_) {
    Tensor grads = store_.flat_grads().slice(r.shard.begin, {r.shard.size()});
    norm = clip_grad_norm(grads, sum_squares, max_norm);
  }
  // A NaN/inf gradient must never reach the parameters. The norm is global, so every
  // rank skips together; the caller decides what to do (the trainer stops).
  if (!std::isfinite(norm)) return norm;
  for (DpRegion& r : regions_) r.adam->step(lr);
  if (cfg_.zero1)
    for (DpRegion& r : regions_) {
      const Group& g = r.group;
      if (g.size() == 1) continue;
      // Named by purpose: every rank's updated share of the region back to every rank.
      std::vector<int64_t> counts;
      for (int k = 0; k < g.size(); ++k) counts.push_back(shard_range(r.range.size(), g.size(), k).size());
      Tensor values = store_.flat_values().slice(r.range.begin, {r.range.size()});
      comm_.allgather(values, counts, g).wait();
    }
  return norm;
}

std::vector<CheckpointRange> DataParallel::checkpoint_ranges() {
  std::vector<CheckpointRange> out;
  for (DpRegion& r : regions_) {
    const ElemRange mine = shard_range(r.range.size(), r.group.size(), r.group.rank);
    out.push_back({ElemRange{r.range.begin + mine.begin, r.range.begin + mine.end}, r.adam.get()});
  }
  return out;
}

std::vector<AdamW*> DataParallel::optimizers() {
  std::vector<AdamW*> out;
  for (DpRegion& r : regions_) out.push_back(r.adam.get());
  return out;
}

size_t DataParallel::optimizer_state_bytes() const {
  size_t bytes = 0;
  for (const DpRegion& r : regions_) bytes += r.adam->state_bytes();
  return bytes;
}

std::vector<ElemRange> DataParallel::buckets() const {
  std::vector<ElemRange> out;
  for (const DpRegion& r : regions_)
    for (ElemRange b : r.tracker.buckets()) out.push_back({r.range.begin + b.begin, r.range.begin + b.end});
  return out;
}

double DataParallel::sum_squares_in(ElemRange r) const {
  double sum = 0.0;
  for (const DpRegion& region : regions_) {
    const int64_t lo = std::max(region.shard.begin, r.begin), hi = std::min(region.shard.end, r.end);
    if (lo < hi) sum += ops_for(store_.device()).sum_squares(store_.flat_grads().slice(lo, {hi - lo}));
  }
  return sum;
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
  char line[480];
  const DpRegion& d = regions_.front();
  int buckets = 0;
  for (const DpRegion& r : regions_) buckets += r.tracker.count();
  int n = std::snprintf(line, sizeof(line),
                        "data parallel: dp %d, ZeRO-1 %s, overlap %s, %d buckets of <= %.3g MiB; "
                        "optimizer state %.2f MiB per rank (elements [%lld, %lld) of %lld",
                        dp_.size(), cfg_.zero1 ? "on" : "off", cfg_.overlap ? "on" : "off", buckets, cfg_.bucket_mb,
                        double(optimizer_state_bytes()) / (1024.0 * 1024.0), (long long)d.shard.begin,
                        (long long)d.shard.end, (long long)d.range.size());
  if (regions_.size() > 1) {
    const DpRegion& e = regions_.back();
    n += std::snprintf(line + n, sizeof(line) - size_t(n), "; %s [%lld, %lld) of [%lld, %lld) over %s",
                       e.what.c_str(), (long long)e.shard.begin, (long long)e.shard.end, (long long)e.range.begin,
                       (long long)e.range.end, e.group.describe().c_str());
  }
  std::snprintf(line + n, sizeof(line) - size_t(n), ")");
  return line;
}

}  // namespace gpt::parallel
