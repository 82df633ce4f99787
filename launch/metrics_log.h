// metrics.jsonl: one JSON object per line ("start", "train", "val", "end"), appended as
// the run goes so a crash keeps everything logged so far. scripts/plot_runs.py reads it.
#pragma once
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace gpt {

class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::string& path);  // appends (resumed runs continue the file)
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Fields are written in order; numbers as given, strings quoted and escaped.
  struct Line {
    std::vector<std::pair<std::string, std::string>> fields;
    Line& num(const std::string& key, double v);
    Line& str(const std::string& key, const std::string& v);
    Line& raw(const std::string& key, const std::string& json);
  };
  // Safe from several threads (the watchdog's writes beside the trainer's): each line is
  // one fputs, and stdio locks the stream for each call, so lines never interleave.
  void write(const std::string& kind, const Line& line);
  static std::string quote(const std::string& s);
  static std::string number(double v);  // as num() writes it: %.9g, null when not finite

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace gpt
