#include "data/mixture_config.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

namespace gpt::data {
namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string join(const std::string& base, const std::string& rel) {
  if (rel.empty() || rel[0] == '/') return rel;
  return base + "/" + rel;
}

}  // namespace

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  std::sort(out.begin(), out.end());  // glob sorts too, but by locale; fix the order
  return out;
}

MixtureConfig mixture_config_load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("mixture config " + path + ": cannot open");
  MixtureConfig cfg;
  cfg.path = path;
  std::string root = dir_of(path), section, line;
  std::vector<bool> has_weight;
  int line_no = 0;
  auto error = [&](const std::string& what) {
    return std::runtime_error("mixture config " + path + ":" + std::to_string(line_no) + ": " + what);
  };
  while (std::getline(in, line)) {
    ++line_no;
    size_t hash = line.find_first_of("#;");
    line = trim(hash == std::string::npos ? line : line.substr(0, hash));
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line.back() != ']') throw error("unterminated section header");
      section = trim(line.substr(1, line.size() - 2));
      if (section.rfind("source.", 0) == 0) {
        std::string name = section.substr(7);
        if (name.empty()) throw error("empty source name");
        for (auto& s : cfg.sources)
          if (s.name == name) throw error("source '" + name + "' defined twice");
        cfg.sources.push_back({name, "", "", 0});
        has_weight.push_back(false);
      } else if (section != "mixture") {
        throw error("unknown section [" + section + "] (expected [mixture] or [source.NAME])");
      }
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos) throw error("expected key = value");
    std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (section == "mixture" && key == "root") {
      root = join(dir_of(path), value);
    } else if (section == "mixture" && key == "shuffle_shards") {
      try { cfg.shuffle_shards = std::stoi(value); } catch (...) { cfg.shuffle_shards = 0; }
      if (cfg.shuffle_shards < 1) throw error("shuffle_shards must be an integer >= 1");
    } else if (!cfg.sources.empty() && section.rfind("source.", 0) == 0) {
      auto& src = cfg.sources.back();
      if (key == "glob") {
        src.glob = value;
      } else if (key == "valid_glob") {
        src.valid_glob = value;
      } else if (key == "weight") {
        size_t used = 0;
        double w = 0;
        try { w = std::stod(value, &used); } catch (...) { used = 0; }
        if (used == 0 || used != value.size()) throw error("weight '" + value + "' is not a number");
        if (!std::isfinite(w) || w <= 0) throw error("weight of source '" + src.name + "' must be > 0");
        src.weight = w;
        has_weight.back() = true;
      } else {
        throw error("unknown key '" + key + "' (expected glob, valid_glob, weight)");
      }
    } else {
      throw error("unknown key '" + key + "' in section [" + section + "]");
    }
  }
  if (cfg.sources.empty())
    throw std::runtime_error("mixture config " + path + ": no [source.NAME] sections");
  for (size_t s = 0; s < cfg.sources.size(); ++s) {
    auto& src = cfg.sources[s];
    if (!has_weight[s]) throw std::runtime_error("mixture config " + path + ": source '" + src.name + "' has no weight");
    if (src.glob.empty()) throw std::runtime_error("mixture config " + path + ": source '" + src.name + "' has no glob");
    src.glob = join(root, src.glob);
    if (!src.valid_glob.empty()) src.valid_glob = join(root, src.valid_glob);
  }
  return cfg;
}

}  // namespace gpt::data
