#include "launch/metrics_log.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace gpt {

MetricsLog::MetricsLog(const std::string& path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) fail("cannot open metrics log " + path + " for writing");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

std::string MetricsLog::number(double v) {
  char buf[64];
  if (std::isfinite(v)) std::snprintf(buf, sizeof buf, "%.9g", v);
  else std::snprintf(buf, sizeof buf, "null");  // JSON has no NaN
  return buf;
}

MetricsLog::Line& MetricsLog::Line::num(const std::string& key, double v) {
  fields.emplace_back(key, number(v));
  return *this;
}

MetricsLog::Line& MetricsLog::Line::str(const std::string& key, const std::string& v) {
  fields.emplace_back(key, quote(v));
  return *this;
}

MetricsLog::Line& MetricsLog::Line::raw(const std::string& key, const std::string& json) {
  fields.emplace_back(key, json);
  return *this;
}

std::string MetricsLog::quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += char(c);
    else if (c == '\n') out += "\\n";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += char(c);
  }
  return out + "\"";
}

void MetricsLog::write(const std::string& kind, const Line& line) {
  if (!file_) return;
  std::string s = "{\"kind\":" + quote(kind);
  for (const auto& [k, v] : line.fields) s += "," + quote(k) + ":" + v;
  s += "}\n";
  std::fputs(s.c_str(), file_);
  std::fflush(file_);
}

}  // namespace gpt
