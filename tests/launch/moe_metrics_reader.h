// The "moe_layers" arrays of metrics.jsonl's train records (launch/moe_metrics.h writes
// them), read back for the MoE tests: one entry per MoE layer per step.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace gpt::test {

struct MoeLayerRecord {
  long long layer = 0, dropped = 0, assignments = 0;
  std::vector<long long> tokens_per_expert;
};

// The integer after `"key":` at or after `from` in `s`; `from` moves past it.
inline long long json_int_after(const std::string& s, const std::string& key, size_t& from) {
  from = s.find("\"" + key + "\":", from) + key.size() + 3;
  size_t used = 0;
  const long long v = std::stoll(s.substr(from), &used);
  from += used;
  return v;
}

// Per train record (step), its layers in the order written.
inline std::vector<std::vector<MoeLayerRecord>> moe_layer_records(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<std::vector<MoeLayerRecord>> steps;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"kind\":\"train\"") == std::string::npos) continue;
    std::vector<MoeLayerRecord> layers;
    const size_t begin = line.find("\"moe_layers\":[");
    size_t at = begin;
    while (begin != std::string::npos && (at = line.find("{\"layer\":", at)) != std::string::npos) {
      MoeLayerRecord r;
      r.layer = json_int_after(line, "layer", at);
      size_t list = line.find("\"tokens_per_expert\":[", at) + 21;
      const size_t end = line.find(']', list);
      while (list < end) {
        size_t used = 0;
        r.tokens_per_expert.push_back(std::stoll(line.substr(list, end - list), &used));
        list += used + 1;  // the number and its comma
      }
      at = end;
      r.dropped = json_int_after(line, "dropped", at);
      r.assignments = json_int_after(line, "assignments", at);
      layers.push_back(r);
    }
    steps.push_back(layers);
  }
  return steps;
}

}  // namespace gpt::test
