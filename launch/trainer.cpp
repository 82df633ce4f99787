#include "launch/trainer.h"

#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <thread>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"
#include "core/op_profile.h"
#include "core/model/memory_plan.h"
#include "core/ops.h"
#include "launch/batch_tensors.h"
#include "launch/data_sources.h"
#include "launch/memory_plans.h"
#include "launch/moe_metrics.h"

namespace gpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
// What to change when a run does not fit, for the start-up check and later failures.
constexpr const char* kFitAdvice =
    "use a smaller train.micro_batch (raising train.grad_accum keeps the batch), "
    "train.recompute = full, or parallel.zero1 = true over more ranks";

// The start-up check compares the memory plan with the free memory, but the plan only
// estimates what the backend allocates for itself (cuBLASLt workspace, kernel scratch,
// CUB sort storage) and leaves out the communicator's buffers, so a run that passes it
// by a small margin can still fail its first allocations. Such a failure ends like the
// check's would: with the plan and what to change, not only the allocator's error.
template <class F>
auto explain_out_of_memory(const MemoryPlan& plan, Device device, const std::string& when, F&& f)
    -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find("out of memory") == std::string::npos) throw;
    fail("out of memory " + when + " on " + device_name(device) + " (" + what + "); the memory plan is " +
         plan.describe() + "; " + kFitAdvice);
  }
}
}  // namespace

Trainer::Trainer(const TrainConfig& cfg, parallel::Communicator& comm)
    : cfg_(cfg),
      comm_(comm),
      rank_(comm.world_rank()),
      topo_(comm.world_size(), parallel::LayoutConfig{cfg.tp, cfg.pp, 0, cfg.ep}),
      groups_(parallel::make_process_groups(comm, topo_)),
      device_(cfg.device_kind()),
      spike_(cfg.spike_zscore, cfg.spike_window),
      phases_(cfg_, rank_) {
  if (cfg_.threads > 0) {
    omp_set_num_threads(cfg_.threads);
    openblas_set_num_threads(cfg_.threads);
  }
  topo_.validate_model(cfg_.model);
  // Checked here rather than in parse_config, which also reads bare model shapes
  // (model_config_from_text) that have no sequence length.
  const int64_t G = cfg_.model.moe.group_tokens;
  GPT_CHECK(!cfg_.model.is_moe() || G == 0 || cfg_.seq_len % G == 0,
            "config key 'moe.group_tokens' (" + std::to_string(G) + ") must divide train.seq_len (" +
                std::to_string(cfg_.seq_len) + "): a routing group may not straddle sequences, whose "
                "neighbours depend on the layout");
  set_op_profiling(cfg_.profile_ops);
  GPT_CHECK(device_available(device_), "config key 'train.device' = cuda, but no CUDA device is usable here");
  const Recompute recompute = parse_recompute(cfg_.recompute);
  const DType compute = cfg_.activation_dtype();
  // The same function as --train.plan_only and the plan program's memory (layout_memory.h).
  plan_ = parallel::rank_memory_plan(cfg_.model, cfg_.micro_batch, cfg_.seq_len, recompute, compute, device_,
                                     memory_layout(cfg_, comm_.world_size()), topo_.coords(rank_).pp);
  size_t free_bytes = 0, total_bytes = 0;
  ops_for(device_).memory_info(&free_bytes, &total_bytes);
  if (plan_.total() > free_bytes)
    fail("out of memory: the run needs " + plan_.describe() + " on " + device_name(device_) + ", which has " +
         std::to_string(free_bytes >> 20) + " MiB free; " + kFitAdvice);
  reset_peak_memory(device_);
  memory_at_start_ = memory_stats(device_).current;
  if (topo_.tp() > 1) {
    tp_region_ = std::make_unique<parallel::TpRegion>(comm_, groups_.tp, cfg_.sp);
    tp_plan_ = std::make_unique<parallel::TensorParallelPlan>(*tp_region_);
  }
  // The model's one seam for how its layers are split: the TP plan, or whole layers;
  // under expert parallelism it also carries the experts' all-to-all.
  LinearFactory* linears = tp_plan_.get();
  if (topo_.ep() > 1) {
    ep_exchange_ = std::make_unique<parallel::EpExchange>(comm_, groups_.ep);
    if (!linears) linears = (whole_linears_ = std::make_unique<LinearFactory>()).get();
    linears->set_expert_exchange(ep_exchange_.get());
  }
  if (topo_.pp() > 1)
    pipeline_ = std::make_unique<PipelineRunner>(cfg_, comm_, topo_, groups_, store_, recompute, linears);
  else
    model_ = make_model(cfg_.model, store_, recompute, StageSpec{}, linears);
  explain_out_of_memory(plan_, device_, "allocating the parameters and optimizer state", [&] {
    store_.materialize(device_, compute);
    store_.init(cfg_.seed);  // same seed on every rank: replicas start identical
    dp_ = std::make_unique<parallel::DataParallel>(
        comm_, groups_.dp, store_, AdamWConfig{cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay},
        parallel::DPConfig{cfg_.zero1, cfg_.dp_overlap, cfg_.bucket_mb},
        parallel::ExpertGroups{groups_.edp, groups_.ep});
  });
  if (pipelined()) {
    pipeline_->attach(*dp_);
  } else {
    dp_->attach(*model_);
    acts_ = model_->make_activations();
  }
  if (topo_.tp() > 1) dp_->set_tensor_parallel_group(groups_.tp);
  if (cfg_.sp) {  // the norms' gradients are partial over the TP ranks' rows: summed once final
    norm_grads_ = std::make_unique<parallel::NormGradSum>(*tp_region_, store_, tp_plan_->norm_params());
    dp_->set_before_reduce([this](int64_t begin, int64_t end) { norm_grads_->sum_within(begin, end); });
  }
  saver_ = std::make_unique<CheckpointSaver>(
      cfg_, rank_, CheckpointLayout{comm_.world_size(), groups_.dp.size(), cfg_.zero1, topo_.tp(), topo_.pp()},
      std::max<int64_t>(1, int64_t(cfg_.bucket_mb * 1024.0 * 1024.0 / sizeof(float))));

  const parallel::RankCoords me = topo_.coords(rank_);
  data::RankSlot slot{me.dp, groups_.dp.size(), cfg_.grad_accum, cfg_.micro_batch, cfg_.seq_len};
  train_data_ = make_batch_source(cfg_, slot, /*validation=*/false);
  if (cfg_.eval_every > 0) {
    val_data_ = make_batch_source(cfg_, slot, /*validation=*/true);
    val_start_ = val_data_->state();
  }
  GPT_CHECK(train_data_->vocab_size() <= cfg_.model.vocab_size,
            "data vocabulary (" + std::to_string(train_data_->vocab_size()) +
                ") is larger than 'model.vocab_size' (" + std::to_string(cfg_.model.vocab_size) + ")");
  inputs_ = empty({cfg_.micro_batch, cfg_.seq_len}, DType::I32, device_);
  targets_ = empty({cfg_.micro_batch, cfg_.seq_len}, DType::I32, device_);
  if (is_logger()) fs::create_directories(cfg_.run_dir);
}

Trainer::~Trainer() = default;

// debug.exit_step / exit_rank / hang: this rank stops mid-step, as a crashed or hung
// process would (the tests' fault injection).
void Trainer::debug_fault(int64_t step) {
  if (step + 1 != cfg_.debug_exit_step || rank_ != cfg_.debug_exit_rank) return;
  std::fprintf(stderr, "rank %d: %s mid-step %lld (debug.exit_step)\n", rank_, cfg_.debug_hang ? "hanging" : "exiting",
               (long long)step + 1);
  std::fflush(stderr);
  while (cfg_.debug_hang) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::exit(3);
}

float Trainer::train_step(int64_t step) {
  store_.zero_grads();
  dp_->begin_step();
  const float dloss = 1.f / float(int64_t(cfg_.micro_batch) * cfg_.seq_len * cfg_.grad_accum);
  double loss = 0.0;
  if (pipelined()) {
    // Every stage reads the step's micro-batches (the first needs the tokens, the last
    // the targets), so every rank's data state stays the same for checkpoints.
    step_batches_.resize(size_t(cfg_.grad_accum));
    for (data::Batch& b : step_batches_) train_data_->next(b);
    loss = pipeline_->train_step(step_batches_, dloss, *dp_, [&] { debug_fault(step); }, &phases_);
  }
  for (int m = 0; m < cfg_.grad_accum && !pipelined(); ++m) {
    if (m > 0) phases_.enter(Phase::data);
    train_data_->next(batch_);
    load_batch(batch_, &inputs_, &targets_);
    dp_->begin_micro(m == cfg_.grad_accum - 1);
    phases_.enter(Phase::forward);
    loss += model_->forward_train(*acts_, inputs_, &targets_, dloss) / double(cfg_.grad_accum);
    debug_fault(step);
    phases_.enter(Phase::backward);
    model_->backward(*acts_, nullptr);
  }
  phases_.enter(Phase::communication);
  if (!pipelined()) {
    const auto wait0 = Clock::now();
    dp_->finish_grads();
    dp_wait_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - wait0).count();
  }
  // The auxiliary losses' gradients are in; their values and the experts' load are logged.
  // Under pipeline parallelism every stage reports its own blocks (summed over pp).
  if (cfg_.model.is_moe())
    moe_step_ = reduce_moe_stats(take_moe_stats(pipelined() ? pipeline_->chunks() : std::vector<Model*>{model_.get()}),
                                 cfg_.grad_accum, cfg_.model, comm_, groups_.dp, groups_.pp);
  if (step + 1 == cfg_.debug_nan_step) loss = std::nan("");
  if (step + 1 == cfg_.debug_nan_grad_step) {  // a finite loss with a poisoned gradient
    Tensor g = store_.flat_grads().slice(dp_->shard().begin, {1});
    const float nan = std::nanf("");
    from_host_f32(g, &nan);
  }
  return dp_->average_loss(float(loss));
}

namespace {
// Adds each row of `b` (its mean loss x T, and T) to its source's sums.
void add_rows_by_source(const data::Batch& b, const double* row_losses, std::vector<double>& loss_tokens,
                        std::vector<double>& tokens) {
  for (int r = 0; r < b.B; ++r) {
    const size_t s = size_t(b.source[size_t(r)]);
    GPT_CHECK(s < tokens.size(), "a validation batch names source " + std::to_string(s) + " of " +
                                     std::to_string(tokens.size()));
    loss_tokens[s] += row_losses[r] * b.T;
    tokens[s] += b.T;
  }
}
}  // namespace

// The same validation samples every time (the source rewinds to its first sample), so
// validation losses compare across steps and across resumed runs. Per source: the rows'
// mean losses (Model::row_losses) grouped by Batch::source, summed as (loss x tokens,
// tokens) over the data-parallel ranks; under pipeline parallelism the last stage has
// them and hands them to the others first.
Trainer::Validation Trainer::evaluate() {
  val_data_->restore(val_start_);
  const size_t S = val_data_->source_names().size();
  Validation v;
  v.loss_tokens.assign(S, 0.0);
  v.tokens.assign(S, 0.0);
  if (pipelined()) {
    std::vector<data::Batch> batches(size_t(cfg_.eval_steps));
    for (data::Batch& b : batches) val_data_->next(b);
    std::vector<double> rows;
    v.loss = dp_->average_loss(pipeline_->evaluate(batches, S ? &rows : nullptr));
    if (S) {
      size_t at = 0;
      for (const data::Batch& b : batches)
        if (at + size_t(b.B) <= rows.size()) add_rows_by_source(b, rows.data() + at, v.loss_tokens, v.tokens), at += b.B;
      std::vector<double> both = v.loss_tokens;
      both.insert(both.end(), v.tokens.begin(), v.tokens.end());
      both = pipeline_->from_last_stage(both);
      v.loss_tokens.assign(both.begin(), both.begin() + S);
      v.tokens.assign(both.begin() + S, both.end());
    }
  } else {
    double sum = 0.0;
    for (int i = 0; i < cfg_.eval_steps; ++i) {
      val_data_->next(batch_);
      load_batch(batch_, &inputs_, &targets_);
      sum += model_->forward(*acts_, inputs_, &targets_);
      if (S) add_rows_by_source(batch_, model_->row_losses().data(), v.loss_tokens, v.tokens);
    }
    v.loss = dp_->average_loss(float(sum / cfg_.eval_steps));
  }
  if (S && groups_.dp.size() > 1) {
    std::vector<float> host(v.loss_tokens.begin(), v.loss_tokens.end());
    host.insert(host.end(), v.tokens.begin(), v.tokens.end());
    Tensor t = zeros({int64_t(host.size())}, DType::F32, device_);
    from_host_f32(t, host.data());
    comm_.allreduce(t, groups_.dp).wait();
    host = to_host_f32(t);
    v.loss_tokens.assign(host.begin(), host.begin() + S);
    v.tokens.assign(host.begin() + S, host.end());
  }
  return v;
}

void Trainer::run() {
  int64_t start = 0;
  // A fresh run never mixes with an old one: its checkpoints would count as "latest" and
  // its metrics would interleave with ours.
  // Only the writing rank checks (the others would see the log it creates); when it
  // fails, pretrain aborts the whole job.
  if (is_logger() && !cfg_.resume && cfg_.resume_from.empty() &&
      (!latest_checkpoint(cfg_.run_dir).empty() || fs::exists(fs::path(cfg_.run_dir) / "metrics.jsonl")))
    fail("config key 'run.dir': " + cfg_.run_dir + " already holds a run; set run.resume = true to "
         "continue it, or choose another run.dir");
  if (!cfg_.resume_from.empty()) {
    start = load_checkpoint(cfg_.resume_from, /*full_state=*/true);
  } else if (!cfg_.init_from.empty()) {
    load_checkpoint(cfg_.init_from, /*full_state=*/false);
  } else if (cfg_.resume) {
    std::string path = latest_checkpoint(cfg_.run_dir);
    if (!path.empty()) start = load_checkpoint(path, /*full_state=*/true);
    else if (is_logger()) std::printf("run.resume: no checkpoint in %s, starting from scratch\n", cfg_.run_dir.c_str());
  }
  if (is_logger()) prepare_run_dir(start);
  log_ = is_logger() ? std::make_unique<MetricsLog>((fs::path(cfg_.run_dir) / "metrics.jsonl").string())
                     : std::make_unique<MetricsLog>();
  phases_.start_watchdog(is_logger() ? log_.get() : nullptr);
  const int dp_size = groups_.dp.size();
  const int64_t tokens_per_step = int64_t(cfg_.micro_batch) * cfg_.seq_len * cfg_.grad_accum * dp_size;
  tokens_seen_ = start * tokens_per_step;
  print_run_header(start, tokens_per_step);

  // With train.profile_ops, the steps after this run's first (which allocates and tunes).
  int64_t profiled_steps = 0;
  double profiled_ms = 0;
  start_counting_bytes();
  for (int64_t step = start; step < cfg_.steps; ++step) {
    if (step == start + 1) reset_op_profile();
    auto t0 = Clock::now();
    phases_.begin_step(step + 1);
    const double tp_ms_before = tp_region_ ? tp_region_->comm_ms() : 0;
    // Activations and backend scratch are allocated during the first step (and grown
    // later only by evaluation and sampling).
    float loss = explain_out_of_memory(plan_, device_, "in training step " + std::to_string(step + 1),
                                       [&] { return train_step(step); });
    // Injected once: a rollback replays the step on other data, which would not spike.
    if (step + 1 == cfg_.debug_spike_step && !spike_injected_) loss *= cfg_.debug_spike_factor, spike_injected_ = true;
    // Checked before the update so a NaN or a spike never reaches the parameters; the
    // loss is already averaged over the ranks, so every rank decides the same.
    double z = 0;
    const float lr = lr_at(step, cfg_.warmup, cfg_.steps, cfg_.lr, cfg_.min_lr);
    float norm = 0;
    bool updated = false;
    int64_t go_on_after = step;  // after_spike: this step (skipped) or a checkpoint's (rolled back)
    if (spike_.is_spike(loss, &z)) {
      go_on_after = after_spike(step, loss, z, "loss");
    } else {
      phases_.enter(Phase::optimizer);
      const auto update0 = Clock::now();
      norm = dp_->clip_and_step(lr, cfg_.grad_clip);  // a non-finite norm skips the update
      store_.sync_compute();
      update_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - update0).count();
      if (std::isfinite(norm)) {
        updated = true;
        spike_.accept(loss);
      } else {
        go_on_after = after_spike(step, norm, std::numeric_limits<double>::infinity(), "gradient norm");
      }
    }
    if (go_on_after != step) {  // rolled back: the loop continues after the checkpoint's step
      step = go_on_after;
      continue;
    }
    ops_for(device_).synchronize();
    phases_.end_step();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    tokens_seen_ += tokens_per_step;
    last_loss_ = loss;
    if (step > start) ++profiled_steps, profiled_ms += ms;
    log_step(step, start, loss, lr, norm, ms, tokens_per_step, updated, tp_region_ ? tp_region_->comm_ms() - tp_ms_before : 0.0);
    if (val_data_ && ((step + 1) % cfg_.eval_every == 0 || step + 1 == cfg_.steps)) {
      set_op_profiling(false);  // the profile covers training steps only
      const Validation v = explain_out_of_memory(plan_, device_, "in validation", [&] { return evaluate(); });
      set_op_profiling(cfg_.profile_ops);
      log_validation(step + 1, v);
    }
    bool periodic = cfg_.checkpoint_every > 0 && (step + 1) % cfg_.checkpoint_every == 0;
    saver_->poll();  // an asynchronous save in flight completes when every rank is done
    if (periodic || (cfg_.save_final && step + 1 == cfg_.steps)) save_checkpoint(step + 1);
    std::fflush(stdout);
  }
  finish_run(start, profiled_steps, profiled_ms);
}

// A spike at `step` (0-based) in `what` ("loss" or "gradient norm", whose value is
// `value`), caught before the update: stops the run, or logs it and returns the step
// after which training goes on (this one for skip, the checkpoint's for rollback).
int64_t Trainer::after_spike(int64_t step, double value, double z, const std::string& what) {
  phases_.end_step();  // what a skip or a rollback does next is not the step's work
  const std::string at = "step " + std::to_string(step + 1) + ": ";
  const std::string last = saver_->last_complete();
  const bool finite = std::isfinite(value);
  std::string why = what + " is " + std::to_string(value);
  if (finite && what == "loss") {
    char buf[160];
    std::snprintf(buf, sizeof buf, "loss %.6g is a spike (z = %.1f over the last %d steps, train.spike_zscore %.3g)",
                  value, z, cfg_.spike_window, cfg_.spike_zscore);
    why = buf;
  }
  const SpikePolicy policy = parse_spike_policy(cfg_.on_spike);
  if (policy == SpikePolicy::stop)
    fail(at + why + "; " + (what == "loss" ? "stopped before the update" : "the update was skipped") +
         ", no checkpoint written (last good: " + (last.empty() ? std::string("none") : last) +
         "; train.on_spike = skip or rollback would go on)");
  MetricsLog::Line record;
  record.num("step", double(step + 1)).str("what", what).num("value", finite ? value : -1.0)
      .num("z", std::isfinite(z) ? z : -1.0).str("action", spike_policy_name(policy));
  int64_t resume_after = step;
  if (policy == SpikePolicy::skip) {
    if (is_logger()) std::printf("%s%s; update skipped (train.on_spike = skip)\n", at.c_str(), why.c_str());
  } else {
    saver_->finish();  // a save still in flight completes first, so "last complete" is final
    const std::string from = saver_->last_complete();
    if (from.empty())
      fail(at + why + "; train.on_spike = rollback, but no complete checkpoint exists to roll back to "
           "(set run.checkpoint_every)");
    CheckpointSource src(from);
    load_params(src, store_);
    store_.sync_compute();
    for (AdamW* adam : dp_->optimizers()) load_optimizer(src, store_, *adam);
    const int64_t to = src.scalars().step;
    // The data source is NOT rewound: the batches of steps to+1 .. step+1 are skipped.
    if (is_logger())
      std::printf("%s%s; rolled back to %s (step %lld), skipping the data of steps %lld-%lld\n", at.c_str(),
                  why.c_str(), from.c_str(), (long long)to, (long long)to + 1, (long long)step + 1);
    record.num("to_step", double(to)).str("checkpoint", from);
    resume_after = to - 1;
  }
  log_->write("spike", record);
  std::fflush(stdout);
  return resume_after;
}

// Collective: every rank writes the values and moments of its checkpoint range
// (DataParallel::checkpoint_ranges) to its own file; nothing is gathered.
void Trainer::save_checkpoint(int64_t steps_done) {
  std::vector<OwnedRange> ranges;
  for (const parallel::CheckpointRange& r : dp_->checkpoint_ranges()) ranges.push_back({r.range.begin, r.range.end, r.adam});
  CheckpointScalars scalars{steps_done, ranges.front().adam->t(), train_data_->state(), cfg_.text};
  saver_->save(owned_state(store_, ranges, std::move(scalars), rank_, comm_.world_size()), steps_done);
}

// Every rank reads the pieces its layout needs, whatever layout wrote them: all of its
// parameters, and the moments of its optimizer range. full_state = false (run.init_from)
// takes the parameters only and starts at step 0.
int64_t Trainer::load_checkpoint(const std::string& path, bool full_state) {
  CheckpointSource src(path);
  load_params(src, store_);
  store_.sync_compute();
  if (!full_state) {
    if (is_logger()) std::printf("initialised parameters from %s (step %lld there), fresh optimizer at step 0\n",
                                 path.c_str(), (long long)src.scalars().step);
    return 0;
  }
  for (AdamW* adam : dp_->optimizers()) load_optimizer(src, store_, *adam);
  train_data_->restore(src.scalars().data_state);
  saver_->set_last_complete(path);
  const int64_t step = src.scalars().step;
  if (is_logger()) std::printf("resumed from %s at step %lld\n", path.c_str(), (long long)step);
  return step;
}

// Rank 0, before the first step (so before any rank can start a save): checkpoint
// directories beyond the starting step are leftovers of an interrupted save and are
// removed; a complete one there would be overwritten piecemeal, so that stops the run.
void Trainer::prepare_run_dir(int64_t start) {
  for (const auto& [step, dir] : list_checkpoints(cfg_.run_dir)) {
    if (step <= start) continue;
    if (has_marker(dir))
      fail("config key 'run.dir': " + cfg_.run_dir + " holds the complete checkpoint " + dir +
           " beyond the starting step " + std::to_string(start) + "; move it away or choose another run.dir");
    fs::remove_all(dir);
  }
}


}  // namespace gpt
