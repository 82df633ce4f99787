// Runs the pretrain binary as a user would and captures what it prints.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace gpt::test {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// An empty directory for one test's run, unique per test process (concurrent CI runs
// on one host must not collide).
inline std::string fresh_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("gpt_launch_test_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(d);
  return d.string();
}

inline RunResult run_command(const std::string& command) {
  std::string cmd = command + " 2>&1";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline RunResult run_pretrain(const std::string& args) {
  return run_command(std::string(PRETRAIN_BIN) + " " + args);
}

// One field of metrics.jsonl's lines of one kind ("train", "val"), as printed (%.9g
// round-trips a float, so equal strings mean bit-identical values).
inline std::vector<std::string> metrics_field(const std::string& run_dir, const std::string& kind,
                                              const std::string& key) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<std::string> out;
  std::string line;
  const std::string field = "\"" + key + "\":";
  while (std::getline(in, line)) {
    if (line.find("\"kind\":\"" + kind + "\"") == std::string::npos) continue;
    size_t a = line.find(field) + field.size();
    out.push_back(line.substr(a, line.find_first_of(",}", a) - a));
  }
  return out;
}

inline std::vector<std::string> train_field(const std::string& run_dir, const std::string& key) {
  return metrics_field(run_dir, "train", key);
}

inline std::vector<std::string> train_losses(const std::string& run_dir) {
  return train_field(run_dir, "loss");
}

// The "checkpoint" lines of metrics.jsonl: each rank's peak-RSS growth during the save.
struct CheckpointLine {
  long long step = 0, bucket_bytes = 0;
  std::vector<long long> rss_growth_bytes;
};
inline std::vector<CheckpointLine> checkpoint_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<CheckpointLine> out;
  std::string line;
  auto number = [&](const std::string& key) {
    size_t a = line.find("\"" + key + "\":") + key.size() + 3;
    return std::stoll(line.substr(a));
  };
  while (std::getline(in, line)) {
    if (line.find("\"kind\":\"checkpoint\"") == std::string::npos) continue;
    CheckpointLine c;
    c.step = number("step");
    c.bucket_bytes = number("bucket_bytes");
    size_t a = line.find("\"rss_growth_bytes\":[") + 20, b = line.find(']', a);
    std::stringstream list(line.substr(a, b - a));
    std::string item;
    while (std::getline(list, item, ',')) c.rss_growth_bytes.push_back(std::stoll(item));
    out.push_back(c);
  }
  return out;
}

// The run failed with exactly one line of ours ("pretrain: ...") and it names
// `must_contain` (a config key, a file).
inline void expect_one_line_error(const RunResult& r, const std::string& must_contain) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  std::string line, ours;
  int count = 0;
  while (std::getline(lines, line))
    if (line.rfind("pretrain:", 0) == 0) ++count, ours = line;
  EXPECT_EQ(count, 1) << r.output;
  EXPECT_NE(ours.find(must_contain), std::string::npos) << r.output;
}

#ifdef MPIRUN_LOCAL
// pretrain on `np` local ranks (one OpenMP thread each), stopped after 120 s (and killed 10 s
// later: mpirun can ignore the TERM while it waits on a rank that was SIGKILLed).
inline RunResult run_ranks(int np, const std::string& args) {
  std::string cmd = std::string(MPIRUN_LOCAL) + " -np " + std::to_string(np) + " " + PRETRAIN_BIN;
  return run_command("OMP_NUM_THREADS=1 timeout -k 10 120 " + cmd + " " + args);
}
#endif

// The largest relative difference between two columns of printed numbers.
inline double max_relative_difference(const std::vector<std::string>& got, const std::vector<std::string>& want,
                                      size_t offset = 0) {
  double worst = 0;
  for (size_t i = 0; i < got.size() && i + offset < want.size(); ++i) {
    const double a = std::stod(got[i]), b = std::stod(want[i + offset]);
    worst = std::max(worst, std::abs(a - b) / std::max(std::abs(b), 1e-30));
  }
  return worst;
}

}  // namespace gpt::test
