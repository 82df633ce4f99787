#include "launch/pipeline_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/ops.h"
#include "launch/batch_tensors.h"
#include "launch/memory_plans.h"
#include "parallel/pipeline/schedule_sim.h"

namespace gpt {

using parallel::pipeline::Action;
using parallel::pipeline::Op;

std::vector<parallel::pipeline::LayerRange> pipeline_chunk_layers(const TrainConfig& cfg) {
  return parallel::pipeline_chunk_layers(cfg.model, cfg.seq_len, memory_layout(cfg, cfg.pp * cfg.tp));
}

PipelineRunner::PipelineRunner(const TrainConfig& cfg, parallel::Communicator& comm,
                               const parallel::Topology& topo, const parallel::ProcessGroups& groups,
                               ParamStore& store, Recompute recompute, const LinearFactory* linears)
    : cfg_(cfg),
      comm_(comm),
      topo_(topo),
      pp_(groups.pp),
      store_(store),
      kind_(parallel::pipeline::parse_schedule(cfg.schedule)),
      shape_{cfg.pp, cfg.grad_accum, cfg.virtual_stages} {
  parallel::pipeline::validate_shape(kind_, shape_);
  GPT_CHECK(kind_ != parallel::pipeline::ScheduleKind::ZeroBubbleH1 || recompute == Recompute::None,
            "config key 'parallel.schedule' = zb-h1 delays weight gradients, which read the saved activations: "
            "it needs 'train.recompute' = none");
  layers_ = pipeline_chunk_layers(cfg);
  const int stage = pp_.rank, chunks = shape_.chunks();
  for (int k = 0; k < shape_.virtual_stages; ++k) {
    const int c = stage + k * shape_.stages;
    StageSpec spec{layers_[size_t(c)].begin, layers_[size_t(c)].end, c == 0, c == chunks - 1};
    models_.push_back(make_model(cfg.model, store, recompute, spec, linears));
    models_.back()->set_micro_batch(cfg.micro_batch, cfg.seq_len);  // sequence shards do not say
  }
  // The tied embedding: the first stage's wte and the last stage's copy, one pair per
  // (dp, tp) position; every other rank is alone in its group (group creation is
  // collective over the world, so every rank passes the whole partition).
  std::vector<std::vector<int>> partition;
  for (int d = 0; d < topo.dp(); ++d)
    for (int t = 0; t < topo.tp(); ++t) {
      partition.push_back({topo.rank_of(0, d, t), topo.rank_of(topo.pp() - 1, d, t)});
      for (int s = 1; s + 1 < topo.pp(); ++s) partition.push_back({topo.rank_of(s, d, t)});
    }
  embed_ = comm.make_group("embed", partition);
  // An untied head (LLaMA's lm_head) shares nothing: the group then sums nothing.
  if (cfg.model.tie_embeddings && (stage == 0 || stage == shape_.stages - 1)) tied_ = store.find("wte");
  actions_ = parallel::pipeline::make_schedule(kind_, shape_, stage);
}

PipelineRunner::~PipelineRunner() = default;

std::vector<Model*> PipelineRunner::chunks() const {
  std::vector<Model*> out;
  for (const auto& m : models_) out.push_back(m.get());
  return out;
}

void PipelineRunner::attach(parallel::DataParallel& dp) {
  base_bytes_ = memory_stats(comm_.device()).current;
  for (auto& m : models_) dp.attach(*m);
  const parallel::ElemRange tied =
      tied_ ? parallel::ElemRange{tied_->offset, tied_->offset + tied_->numel()} : parallel::ElemRange{0, 0};
  dp.hold_back(tied);
  // The last stage's copy is counted on the first stage only.
  dp.set_pipeline_group(pp_, pp_.rank == shape_.stages - 1 ? tied : parallel::ElemRange{0, 0});
  // Under sequence parallelism stages hand each other their rows of the residual stream.
  const int64_t N = int64_t(cfg_.micro_batch) * cfg_.seq_len, rows = cfg_.sp ? N / cfg_.tp : 0;
  executor_ = std::make_unique<parallel::pipeline::PipelineExecutor>(
      comm_, pp_, shape_, chunks(), cfg_.micro_batch, cfg_.seq_len, cfg_.model.n_embd, store_.compute_dtype(), rows);
}

std::string PipelineRunner::describe() const {
  std::string s = "pipeline: " + std::to_string(shape_.stages) + " stages x " + std::to_string(shape_.virtual_stages) +
                  " chunks, schedule " + parallel::pipeline::schedule_name(kind_) + ", " +
                  std::to_string(shape_.micro_batches) + " micro-batches; layers per chunk";
  for (const parallel::pipeline::LayerRange& r : layers_) s += " " + std::to_string(r.count());
  char bubble[64];
  std::snprintf(bubble, sizeof(bubble), "; formula bubble %.1f%%", 100.0 * formula_bubble());
  return s + bubble;
}

double PipelineRunner::formula_bubble() const { return parallel::pipeline::formula_bubble(kind_, shape_); }

std::vector<double> PipelineRunner::from_last_stage(const std::vector<double>& values) {
  if (values.empty()) return values;
  Tensor t = zeros({int64_t(values.size())}, DType::F32, comm_.device());
  const std::vector<float> host(values.begin(), values.end());
  from_host_f32(t, host.data());
  comm_.broadcast(t, shape_.stages - 1, pp_).wait();
  const std::vector<float> got = to_host_f32(t);
  return std::vector<double>(got.begin(), got.end());
}

float PipelineRunner::from_last_stage(double value) {
  Tensor t = zeros({1}, DType::F32, comm_.device());
  const float v = float(value);
  from_host_f32(t, &v);
  comm_.broadcast(t, shape_.stages - 1, pp_).wait();
  return to_host_f32(t)[0];
}

// Megatron's embedding all-reduce: after it both copies hold the sum of the embedding's
// and the head's gradient, so they take the same update and stay equal.
void PipelineRunner::sum_tied_embedding() {
  if (!tied_) return;
  Tensor g = store_.flat_grads().slice(tied_->offset, {tied_->numel()});
  comm_.allreduce(g, embed_).wait();
}

float PipelineRunner::train_step(const std::vector<data::Batch>& batches, float dloss, parallel::DataParallel& dp,
                                 const std::function<void()>& mid_step, StepPhases* phases) {
  parallel::pipeline::StepHooks hooks;
  if (phases)
    hooks.before = [&](const Action& next) {
      const bool waits = next.op == Op::RecvAct || next.op == Op::RecvGrad;
      phases->enter(waits ? Phase::communication : next.op == Op::Forward ? Phase::forward : Phase::backward);
    };
  bool first = true;
  if (mid_step)
    hooks.after_compute = [&](const Action&) {
      if (first) mid_step();
      first = false;
    };
  hooks.load = [&](int m, Tensor* tokens, Tensor* targets) { load_batch(batches[size_t(m)], tokens, targets); };
  hooks.before_backward = [&](int, int, bool last) { dp.begin_micro(last); };
  const double loss_sum = executor_->train_step(actions_, dloss, hooks);
  if (phases) phases->enter(Phase::communication);
  sum_tied_embedding();
  if (tied_) dp.release({tied_->offset, tied_->offset + tied_->numel()});
  dp.finish_grads();
  constexpr size_t kKeptSteps = 1000;
  if (steps_++ > 0) {
    busy_ms_.push_back(executor_->last_busy_ms());
    step_ms_.push_back(executor_->last_step_ms());
    if (busy_ms_.size() > kKeptSteps) busy_ms_.erase(busy_ms_.begin()), step_ms_.erase(step_ms_.begin());
  }
  return from_last_stage(loss_sum / double(batches.size()));
}

float PipelineRunner::evaluate(const std::vector<data::Batch>& batches, std::vector<double>* row_losses) {
  parallel::pipeline::StepHooks hooks;
  hooks.load = [&](int m, Tensor* tokens, Tensor* targets) { load_batch(batches[size_t(m)], tokens, targets); };
  if (row_losses) {
    row_losses->clear();
    hooks.after_loss = [&](int, const Model& head) {
      const std::vector<double> rows = head.row_losses();
      row_losses->insert(row_losses->end(), rows.begin(), rows.end());
    };
  }
  const double loss_sum = executor_->evaluate(int(batches.size()), hooks);
  return from_last_stage(loss_sum / double(batches.size()));
}

double PipelineRunner::measured_bubble() {
  // Every stage's busy and step times, each stage filling its own rows of one sum.
  const int P = shape_.stages;
  const int64_t K = int64_t(step_ms_.size());
  if (K == 0) return 0.0;
  std::vector<float> host(size_t(2 * P * K), 0.f);
  for (int64_t s = 0; s < K; ++s) {
    host[size_t(pp_.rank * K + s)] = float(busy_ms_[size_t(s)]);
    host[size_t((P + pp_.rank) * K + s)] = float(step_ms_[size_t(s)]);
  }
  Tensor t = zeros({2 * P * K}, DType::F32, comm_.device());
  from_host_f32(t, host.data());
  comm_.allreduce(t, pp_).wait();
  host = to_host_f32(t);
  double busy = 0, wall = 0;
  for (int64_t s = 0; s < K; ++s) {
    double slowest = 0;
    for (int r = 0; r < P; ++r) {
      busy += host[size_t(r * K + s)];
      slowest = std::max(slowest, double(host[size_t((P + r) * K + s)]));
    }
    wall += P * slowest;
  }
  return wall > 0 ? 1.0 - busy / wall : 0.0;
}

double PipelineRunner::activation_peak_mib() const {
  const size_t peak = memory_stats(comm_.device()).peak;
  return double(peak > base_bytes_ ? peak - base_bytes_ : 0) / (1 << 20);
}

std::vector<double> PipelineRunner::per_stage(double value) {
  Tensor t = zeros({shape_.stages}, DType::F32, comm_.device());
  std::vector<float> host(size_t(shape_.stages), 0.f);
  host[size_t(pp_.rank)] = float(value);
  from_host_f32(t, host.data());
  comm_.allreduce(t, pp_).wait();  // each stage fills its own slot
  const std::vector<float> all = to_host_f32(t);
  return std::vector<double>(all.begin(), all.end());
}

void PipelineRunner::write_timeline(const std::string& path) {
  // Each rank's events as JSON text, gathered to pp rank 0 as bytes (lengths first).
  std::ostringstream ev;
  const int rank = comm_.world_rank();
  bool first = true;
  for (const parallel::pipeline::TimedAction& t : executor_->timeline()) {
    if (!first) ev << ",\n";
    first = false;
    const char* what = parallel::pipeline::op_name(t.action.op);
    ev << "{\"name\":\"" << what << t.action.micro << "\",\"cat\":\"" << what << "\",\"ph\":\"X\",\"pid\":0,\"tid\":"
       << rank << ",\"ts\":" << t.start_ms * 1e3 << ",\"dur\":" << (t.end_ms - t.start_ms) * 1e3
       << ",\"args\":{\"micro\":" << t.action.micro << ",\"chunk\":" << t.action.chunk << ",\"stage\":" << pp_.rank
       << "}}";
  }
  const std::string mine = ev.str();
  const parallel::Group world = comm_.world_group();
  const int W = world.size();
  Tensor lengths = zeros({W}, DType::F32, Device::CPU);
  lengths.f32()[rank] = float(mine.size());
  Tensor lengths_dev = empty({W}, DType::F32, comm_.device());
  from_host_f32(lengths_dev, lengths.f32());
  comm_.allreduce(lengths_dev, world).wait();
  const std::vector<float> len = to_host_f32(lengths_dev);
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (float l : len) counts.push_back(int64_t(l)), total += int64_t(l);
  // Bytes travel as I32 words (one char each): tiny, and every communicator moves I32.
  Tensor host = zeros({std::max<int64_t>(total, 1)}, DType::I32, Device::CPU);
  int64_t at = 0;
  for (int r = 0; r < rank; ++r) at += counts[size_t(r)];
  for (size_t i = 0; i < mine.size(); ++i) host.i32()[at + int64_t(i)] = int32_t((unsigned char)mine[i]);
  Tensor buf = empty({std::max<int64_t>(total, 1)}, DType::I32, comm_.device());
  ops_for(comm_.device()).copy_from_host(buf.raw(), host.raw(), size_t(host.numel()) * 4);
  comm_.allgather(buf, counts, world).wait();
  if (rank != 0) return;
  ops_for(comm_.device()).copy_to_host(host.raw(), buf.raw(), size_t(host.numel()) * 4);
  std::ofstream out(path);
  GPT_CHECK(out.good(), "config key 'parallel.timeline': cannot write " + path);
  std::vector<std::string> entries;
  at = 0;
  for (int r = 0; r < W; ++r) {
    entries.push_back("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":" + std::to_string(r) +
                      ",\"args\":{\"name\":\"rank " + std::to_string(r) + "\"}}");
    std::string events;
    for (int64_t i = 0; i < counts[size_t(r)]; ++i) events += char(host.i32()[at + i]);
    at += counts[size_t(r)];
    if (!events.empty()) entries.push_back(events);
  }
  out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (size_t i = 0; i < entries.size(); ++i) out << (i ? ",\n" : "") << entries[i];
  out << "\n]}\n";
}

}  // namespace gpt
