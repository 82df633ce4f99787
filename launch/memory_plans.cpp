#include "launch/memory_plans.h"

#include <cstdio>

#include "core/model/memory_plan.h"

namespace gpt {

std::string describe_memory_plans(const TrainConfig& cfg, int world) {
  const Device device = cfg.device_kind();
  const DType act = cfg.activation_dtype();
  const int shards = cfg.zero1 ? world / cfg.tp : 1;  // the data-parallel ranks share the optimizer
  char head[256];
  std::snprintf(head, sizeof head,
                "memory plan per rank: %s (%lld parameters), micro-batch %d x %d tokens, %s, %s%s%s\n",
                cfg.model_preset.c_str(), (long long)cfg.model.num_params(), cfg.micro_batch,
                cfg.seq_len, cfg.dtype.c_str(), device_name(device),
                cfg.tp > 1 ? (", tensor parallel over " + std::to_string(cfg.tp) + " ranks" +
                              (cfg.sp ? std::string(", sequence parallel") : std::string())).c_str() : "",
                shards > 1 ? (", optimizer sharded over " + std::to_string(shards) + " ranks").c_str()
                           : "");
  std::string out = head;
  for (const char* mode : {"none", "selective", "full"}) {
    const MemoryPlan p = plan_memory(cfg.model, cfg.micro_batch, cfg.seq_len, parse_recompute(mode),
                                     shards > 0 ? shards : 1, act, device, cfg.tp, PlanStage{}, cfg.sp);
    char line[320];
    std::snprintf(line, sizeof line, "  recompute %-9s %s%s\n", mode, p.describe().c_str(),
                  cfg.recompute == mode ? "   <- train.recompute" : "");
    out += line;
  }
  return out;
}

}  // namespace gpt
