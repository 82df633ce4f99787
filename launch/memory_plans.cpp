#include "launch/memory_plans.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "core/model/memory_plan.h"

namespace gpt {

parallel::MemoryLayout memory_layout(const TrainConfig& cfg, int world) {
  parallel::MemoryLayout L;
  L.tp = std::max(1, cfg.tp), L.pp = std::max(1, cfg.pp), L.dp = std::max(1, world / (L.tp * L.pp));
  L.sp = cfg.sp, L.zero1 = cfg.zero1, L.ep = std::max(1, cfg.ep);
  if (L.pp > 1) L.schedule = parallel::pipeline::parse_schedule(cfg.schedule);  // read only by a pipeline
  L.virtual_stages = cfg.virtual_stages, L.micro_batches = cfg.grad_accum;
  if (!cfg.layers_per_stage.empty()) {
    std::stringstream in(cfg.layers_per_stage);
    std::string item;
    while (std::getline(in, item, ',')) {
      try {
        L.layers_per_chunk.push_back(std::stoi(item));
      } catch (const std::exception&) {
        fail("config key 'parallel.layers_per_stage': '" + item + "' is not a number");
      }
    }
  }
  return L;
}

std::string describe_memory_plans(const TrainConfig& cfg, int world) {
  const Device device = cfg.device_kind();
  const DType act = cfg.activation_dtype();
  const parallel::MemoryLayout layout = memory_layout(cfg, world);
  const int shards = layout.zero1 ? layout.dp : 1;  // the data-parallel ranks share the optimizer
  std::string parallel_text;
  if (layout.tp > 1)
    parallel_text += ", tensor parallel over " + std::to_string(layout.tp) + " ranks" +
                     (layout.sp ? ", sequence parallel" : "");
  if (layout.pp > 1)
    parallel_text += ", " + std::to_string(layout.pp) + " pipeline stages (" + cfg.schedule +
                     (layout.virtual_stages > 1 ? ", " + std::to_string(layout.virtual_stages) + " chunks each" : "") +
                     ", " + std::to_string(layout.micro_batches) + " micro-batches)";
  if (shards > 1) parallel_text += ", optimizer sharded over " + std::to_string(shards) + " ranks";
  if (layout.ep > 1)
    parallel_text += ", experts split over " + std::to_string(layout.ep) + " ranks" +
                     (shards > 1 ? " (their optimizer sharded over " + std::to_string(std::max(1, shards / layout.ep)) +
                                       ")"
                                 : "");
  char head[512];
  std::snprintf(head, sizeof head, "memory plan per rank: %s (%lld parameters), micro-batch %d x %d tokens, %s, %s%s\n",
                cfg.model_preset.c_str(), (long long)cfg.model.num_params(), cfg.micro_batch, cfg.seq_len,
                cfg.dtype.c_str(), device_name(device), parallel_text.c_str());
  std::string out = head;
  if (cfg.model.is_moe()) {
    const MoeConfig& m = cfg.model.moe;
    const parallel::StageMemory none = parallel::largest_stage_memory(cfg.model, cfg.micro_batch, cfg.seq_len,
                                                                      Recompute::None, act, device, layout);
    std::snprintf(head, sizeof head,
                  "  mixture of experts: %d of %d blocks, %lld experts, top-%lld; %lld parameters in all, %lld active "
                  "per token; a rank holds %lld (%lld of each MoE block's experts, parallel.ep = %d)\n",
                  cfg.model.moe_blocks(), cfg.model.n_layer, (long long)m.experts, (long long)m.top_k,
                  (long long)cfg.model.num_params(), (long long)cfg.model.active_params(),
                  (long long)none.plan.param_count, (long long)(m.experts / layout.ep), layout.ep);
    out += head;
    // Expert parallelism is carved out of data parallelism (parallel/topology.h).
    if (layout.dp % layout.ep != 0) {
      std::snprintf(head, sizeof head,
                    "  parallel.ep = %d does not divide the %d data-parallel ranks: run the plan under mpirun -np "
                    "with a multiple of %d ranks\n",
                    layout.ep, layout.dp, layout.ep * layout.tp * layout.pp);
      return out + head;
    }
  }
  const bool zero_bubble = layout.schedule == parallel::pipeline::ScheduleKind::ZeroBubbleH1 && layout.pp > 1;
  for (const char* mode : {"none", "selective", "full"}) {
    const Recompute r = parse_recompute(mode);
    char line[400];
    if (zero_bubble && r != Recompute::None) {  // the pipeline runner refuses it (pipeline_runner.cpp)
      std::snprintf(line, sizeof line, "  recompute %-9s not with parallel.schedule zb-h1\n", mode);
      out += line;
      continue;
    }
    if (cfg.model.is_moe() && r != Recompute::None) {  // refused at start-up (launch/config.cpp)
      std::snprintf(line, sizeof line, "  recompute %-9s not with moe.experts > 0 (MoE blocks keep every activation)\n",
                    mode);
      out += line;
      continue;
    }
    const parallel::StageMemory m =
        parallel::largest_stage_memory(cfg.model, cfg.micro_batch, cfg.seq_len, r, act, device, layout);
    const std::string stage = layout.pp > 1 ? " on stage " + std::to_string(m.stage) : "";
    std::snprintf(line, sizeof line, "  recompute %-9s %s (%zu bytes%s)%s\n", mode, m.plan.describe().c_str(),
                  m.plan.total(), stage.c_str(), cfg.recompute == mode ? "   <- train.recompute" : "");
    out += line;
  }
  return out;
}

}  // namespace gpt
