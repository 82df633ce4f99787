// What the trainer prints and records (stdout on rank 0, metrics.jsonl): the run's
// header, each step's line and record, validation, the op profile, the end-of-run
// summaries (pipeline bubble, bytes per group) and the text sample.
#include <cmath>
#include <cstdio>
#include <string>

#include "core/op_profile.h"
#include "core/rng.h"
#include "launch/data_sources.h"
#include "launch/generate.h"
#include "launch/moe_metrics.h"
#include "launch/trainer.h"

namespace gpt {

// The groups and operations whose bytes the "comm_bytes" record reports. pp: the stages'
// activation and gradient sends; embed: the tied embedding's sum; ep: the experts'
// all-to-alls (rows and counts); edp: the expert gradients' reduction.
constexpr const char* kCountedGroups[] = {"dp", "tp", "pp", "embed", "ep", "edp"};
constexpr const char* kCountedOps[] = {"allreduce", "reduce_scatter", "allgather", "broadcast", "send", "all_to_all"};

void Trainer::start_counting_bytes() {
  for (const char* g : kCountedGroups)
    for (const char* op : kCountedOps) bytes_before_[g][op] = comm_.traffic().get(g, op).bytes;
}

void Trainer::print_run_header(int64_t start, int64_t tokens_per_step) {
  const int dp_size = groups_.dp.size();
  const int64_t N = store_.total();
  auto say = [&](const char* fmt, auto... args) {
    if (is_logger()) std::printf(fmt, args...);
  };
  // The whole model's count; a rank of a split model holds fewer (its stage, its TP
  // slices, vocabulary padding included).
  const int64_t whole = cfg_.model.num_params();
  say("model: %s (%s), %lld parameters (%.1f M), L=%d H=%d C=%d V=%d, on %s%s\n", cfg_.model_preset.c_str(),
      family_name(cfg_.model.family), (long long)whole, whole / 1e6, cfg_.model.n_layer, cfg_.model.n_head,
      cfg_.model.n_embd, cfg_.model.vocab_size, device_name(device_),
      N == whole ? "" : ("; rank 0 holds " + std::to_string(N) + " of them").c_str());
  if (cfg_.model.is_moe())
    say("mixture of experts: %d of %d blocks, %lld experts, top-%lld; %lld parameters active per token (%.1f M)\n",
        cfg_.model.moe_blocks(), cfg_.model.n_layer, (long long)cfg_.model.moe.experts,
        (long long)cfg_.model.moe.top_k, (long long)cfg_.model.active_params(), cfg_.model.active_params() / 1e6);
  say("data: %s\n", train_data_->describe().c_str());
  say("batch: %d x %d tokens x %d micro-batches x %d data-parallel ranks = %lld tokens/step; %lld steps from step %lld\n",
              cfg_.micro_batch, cfg_.seq_len, cfg_.grad_accum, dp_size, (long long)tokens_per_step,
              (long long)cfg_.steps, (long long)start);
  say("%s\n", topo_.describe().c_str());
  say("%s\n", dp_->describe().c_str());
  if (pipelined()) say("%s\n", pipeline_->describe().c_str());
  say("memory plan (%s, recompute %s%s): %s\n", cfg_.dtype.c_str(), cfg_.recompute.c_str(),
      cfg_.sp ? ", sequence parallel" : "", plan_.describe().c_str());
  log_->write("start", MetricsLog::Line()
                           .num("params", double(whole))
                           .num("params_active", double(cfg_.model.active_params()))
                           .num("params_rank0", double(N))
                           .num("start_step", double(start))
                           .num("tokens_per_step", double(tokens_per_step))
                           .str("config", cfg_.text));
  saver_->set_log(log_.get());
}

// The step line (every run.log_every steps and the last) and the "train" record of an
// updated step; after the first, the measured memory beside the plan.
void Trainer::log_step(int64_t step, int64_t start, float loss, float lr, float norm, double ms,
                       int64_t tokens_per_step, bool updated, double tp_comm_ms) {
  auto say = [&](const char* fmt, auto... args) {
    if (is_logger()) std::printf(fmt, args...);
  };
  const double tps = tokens_per_step / (ms / 1e3);
    if (step == start)
      say("memory measured after the first step: peak %.1f MiB of tensors (plan %.1f MiB, workspace aside)\n",
          double(memory_stats(device_).peak - memory_at_start_) / (1 << 20),
          double(plan_.total() - plan_.workspace) / (1 << 20));
    const bool moe = cfg_.model.is_moe();
    char moe_text[96] = "";
    if (moe) std::snprintf(moe_text, sizeof moe_text, " | moe_aux %.4g | moe_z %.4g", moe_step_.aux_loss, moe_step_.z_loss);
    if (updated && ((step + 1) % cfg_.log_every == 0 || step + 1 == cfg_.steps))
      say("step %6lld/%lld | loss %.6f%s | lr %.3e | norm %.4f | %8.1f ms | %9.0f tok/s\n",
                  (long long)(step + 1), (long long)cfg_.steps, loss, moe_text, lr, norm, ms, tps);
    // A skipped step has its "spike" record instead.
    if (updated) {
      MetricsLog::Line record;
      record.num("step", double(step + 1))
          .num("loss", loss)
          .num("lr", lr)
          .num("grad_norm", norm)
          .num("tokens", double(tokens_seen_))
          .num("tokens_per_s", tps)
          .num("step_ms", ms)
          // this rank's time inside TP collectives (TpRegion::comm_ms)
          .num("tp_comm_ms", tp_comm_ms)
          .num("dp_wait_ms", dp_wait_ms_)
          .num("update_ms", update_ms_);
      // `loss` is the cross-entropy; an MoE model optimises loss + moe_aux + moe_z.
      if (moe)
        record.num("moe_aux", moe_step_.aux_loss).num("moe_z", moe_step_.z_loss)
            .raw("moe_layers", moe_layers_json(moe_step_));
      log_->write("train", record);
    }
}

void Trainer::finish_run(int64_t start, int64_t profiled_steps, double profiled_ms) {
  auto say = [&](const char* fmt, auto... args) {
    if (is_logger()) std::printf(fmt, args...);
  };
  if (pipelined()) {
    const double bubble = pipeline_->measured_bubble();
    if (cfg_.steps - start > 1)
      say("pipeline: measured bubble %.1f%% (idle share of the stages' time, against the slowest stage's step, "
          "steps after the first); formula %.1f%%\n",
          100.0 * bubble, 100.0 * pipeline_->formula_bubble());
    // Each stage's peak of tensor memory over the run above its parameters, gradients and
    // optimizer state (its activations in flight and scratch), for the benchmark.
    const std::vector<double> peaks = pipeline_->per_stage(pipeline_->activation_peak_mib());
    std::string peak_list = "[";
    for (size_t s = 0; s < peaks.size(); ++s) peak_list += (s ? "," : "") + std::to_string(peaks[s]);
    log_->write("pipeline", MetricsLog::Line()
                                .num("bubble", bubble)
                                .num("formula_bubble", pipeline_->formula_bubble())
                                .raw("peak_mib_per_stage", peak_list + "]"));
    if (!cfg_.pipeline_timeline.empty()) {
      pipeline_->write_timeline(cfg_.pipeline_timeline);
      say("pipeline: timeline of the last step in %s (open in ui.perfetto.dev)\n", cfg_.pipeline_timeline.c_str());
    }
  }
  phases_.stop_watchdog();
  if (cfg_.profile_ops && profiled_steps > 0) print_op_profile(profiled_steps, profiled_ms / double(profiled_steps));
  saver_->finish();
  log_->write("end", MetricsLog::Line().num("step", double(cfg_.steps)).num("loss", last_loss_));
  // This rank's bytes per group over the whole run (the ring formulas of
  // parallel/communicator.h), for benchmarks/scaling_bench.py to set beside the analytic volume.
  // Set-up traffic (the initial broadcast) is left out: the counts start at the first step.
  MetricsLog::Line bytes;
  bytes.num("steps", double(cfg_.steps - start));
  for (const char* g : kCountedGroups)
    for (const char* op : kCountedOps)
      bytes.num(std::string(g) + "_" + op + "_bytes", comm_.traffic().get(g, op).bytes - bytes_before_[g][op]);
  log_->write("comm_bytes", bytes);
  // Under tensor parallelism the model's forward is collective over the TP group, so
  // rank 0's whole TP group draws the (identical) sample; rank 0 prints it. Under expert
  // parallelism it is collective over the EP group, carved out of dp: every rank draws
  // the same sample, so every EP group's all-to-alls pair up.
  if (cfg_.sample_tokens > 0 && pipelined()) {
    say("sample: not drawn under pipeline parallelism; use the sample program on the checkpoint\n");
  } else if (cfg_.sample_tokens > 0 && cfg_.model.moe.group_tokens > 0) {
    // The prompt grows one token at a time, and the MoE layer routes whole groups only.
    say("sample: not drawn with moe.group_tokens > 0 (a growing prompt does not split into groups)\n");
  } else if (cfg_.sample_tokens > 0 && (topo_.coords(rank_).dp == 0 || topo_.ep() > 1)) {
    print_sample();
  }
}

// "step N | val loss L | a La | b Lb" and a "val" record with "source_loss" and
// "source_tokens" objects keyed by source name (a source no validation row came from
// has loss null).
void Trainer::log_validation(int64_t step, const Validation& v) {
  const std::vector<std::string> names = val_data_->source_names();
  std::string line, losses = "{", tokens = "{";
  for (size_t s = 0; s < names.size(); ++s) {
    const double l = v.tokens[s] > 0 ? v.loss_tokens[s] / v.tokens[s] : std::nan("");
    char buf[96];
    std::snprintf(buf, sizeof buf, " | %s %.6f", names[s].c_str(), l);
    line += buf;
    losses += (s ? "," : "") + MetricsLog::quote(names[s]) + ":" + MetricsLog::number(l);
    tokens += (s ? "," : "") + MetricsLog::quote(names[s]) + ":" + std::to_string(int64_t(v.tokens[s]));
  }
  if (is_logger()) std::printf("step %6lld | val loss %.6f%s\n", (long long)step, v.loss, line.c_str());
  MetricsLog::Line record;
  record.num("step", double(step)).num("tokens", double(tokens_seen_)).num("val_loss", v.loss);
  if (!names.empty()) record.raw("source_loss", losses + "}").raw("source_tokens", tokens + "}");
  log_->write("val", record);
}

// Per step, each op's share, and what the step spends outside the ops (communication,
// host work between ops); printed and written to metrics.jsonl as an "op_profile" line.
void Trainer::print_op_profile(int64_t steps, double step_ms) {
  if (!is_logger()) return;  // every rank profiles its own ops; rank 0 speaks for them
  const std::vector<OpTime> ops = op_profile(device_);
  double in_ops = 0;
  for (const OpTime& o : ops) in_ops += o.seconds * 1e3 / double(steps);
  std::printf("op profile (%s, mean of %lld steps after the first; each op synchronised, so steps ran slower):\n"
      "  step %.2f ms = ops %.2f ms + outside the ops %.2f ms\n",
      device_name(device_), (long long)steps, step_ms, in_ops, step_ms - in_ops);
  std::string json = "[";
  for (const OpTime& o : ops) {
    const double ms = o.seconds * 1e3 / double(steps);
    std::printf("  %-32s %9.3f ms %6.1f%% %7.1f calls\n", o.name.c_str(), ms, 100.0 * ms / step_ms,
        double(o.calls) / double(steps));
    if (json.size() > 1) json += ",";
    json += "{\"op\":" + MetricsLog::quote(o.name) + ",\"ms\":" + std::to_string(ms) +
            ",\"calls\":" + std::to_string(double(o.calls) / double(steps)) + "}";
  }
  log_->write("op_profile", MetricsLog::Line()
                                .num("steps", double(steps))
                                .num("step_ms", step_ms)
                                .num("ops_ms", in_ops)
                                .raw("ops", json + "]"));
}

void Trainer::print_sample() {
  std::unique_ptr<TextCodec> codec = make_text_codec(cfg_);
  std::vector<int32_t> prompt = codec->encode(cfg_.sample_prompt);
  if (prompt.empty()) prompt.push_back(0);
  SampleConfig sc{cfg_.sample_tokens, cfg_.sample_temperature, cfg_.sample_top_k, cfg_.seq_len,
                  codec->vocab_size()};
  Rng rng(cfg_.seed + 1);
  const bool speak = is_logger();
  if (speak)
    std::printf("---- sample (%d tokens, temperature %.2f, top-k %d) ----\n%s", cfg_.sample_tokens,
                cfg_.sample_temperature, cfg_.sample_top_k, cfg_.sample_prompt.c_str());
  generate(*model_, prompt, sc, rng, [&](int32_t id) {
    if (!speak) return;
    std::fputs(codec->decode(id).c_str(), stdout);
    std::fflush(stdout);
  });
  if (speak) std::printf("\n----\n");
}

}  // namespace gpt
