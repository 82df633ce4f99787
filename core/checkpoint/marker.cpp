#include "core/checkpoint/marker.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>

#include "core/checkpoint/hdf5_file.h"
#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {
constexpr const char* kMarkerMagic = "gptrain-checkpoint-marker";

void write_all(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("checkpoint " + path + ": cannot create: " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      fail("checkpoint " + path + ": write failed: " + std::strerror(err));
    }
    done += size_t(n);
  }
  // fsync before close and rename: the marker must never name data that is not on disk.
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("checkpoint " + path + ": fsync failed: " + std::strerror(err));
  }
  if (::close(fd) != 0) fail("checkpoint " + path + ": close failed: " + std::strerror(errno));
}
}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "ckpt_%08lld", static_cast<long long>(step));
  return (fs::path(run_dir) / buf).string();
}

std::string rank_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank_%05d.h5", rank);
  return buf;
}

void write_marker(const std::string& ckpt_dir, const CheckpointMarker& m) {
  std::string text = std::string(kMarkerMagic) + "\n";
  auto line = [&](const char* k, int64_t v) { text += std::string(k) + " = " + std::to_string(v) + "\n"; };
  line("format_version", m.format_version);
  line("step", m.step);
  line("world_size", m.layout.world);
  line("rank_files", m.rank_files);
  line("layout.dp", m.layout.dp);
  line("layout.zero1", m.layout.zero1 ? 1 : 0);
  line("layout.tp", m.layout.tp);
  line("layout.pp", m.layout.pp);
  const std::string final_path = (fs::path(ckpt_dir) / kMarkerName).string();
  const std::string tmp = final_path + ".tmp";
  write_all(tmp, text);
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0)
    fail("checkpoint " + final_path + ": rename from .tmp failed: " + std::strerror(errno));
  fsync_path(ckpt_dir);
}

bool has_marker(const std::string& ckpt_dir) {
  return fs::is_regular_file(fs::path(ckpt_dir) / kMarkerName);
}

CheckpointMarker read_marker(const std::string& ckpt_dir) {
  const std::string path = (fs::path(ckpt_dir) / kMarkerName).string();
  if (!fs::is_directory(ckpt_dir)) fail("checkpoint " + ckpt_dir + ": no such checkpoint directory");
  if (!has_marker(ckpt_dir))
    fail("checkpoint " + ckpt_dir + ": incomplete checkpoint (a save was interrupted; no " + kMarkerName +
         " marker); delete it or resume from an earlier one");
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line) || line != kMarkerMagic)
    fail("checkpoint " + path + ": not a gptrain checkpoint marker; delete the directory or resume from an earlier one");
  std::map<std::string, int64_t> kv;
  while (std::getline(in, line)) {
    const size_t eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    try {
      kv[line.substr(0, eq)] = std::stoll(line.substr(eq + 3));
    } catch (const std::exception&) {
      fail("checkpoint " + path + ": bad line '" + line + "'");
    }
  }
  auto get = [&](const char* k, int64_t fallback = -1) {
    auto it = kv.find(k);
    if (it != kv.end()) return it->second;
    if (fallback >= 0) return fallback;  // keys added later default to the old meaning
    fail("checkpoint " + path + ": marker has no '" + k + "'");
  };
  // Rank counts size the loader's list of files: one that is not a positive int (a
  // damaged marker) would leave it reading a file that is not there.
  auto count = [&](const char* k, int64_t fallback = -1) {
    const int64_t v = get(k, fallback);
    if (v < 1 || v > std::numeric_limits<int>::max())
      fail("checkpoint " + path + ": '" + k + " = " + std::to_string(v) +
           "' is not a count of ranks (marker damaged?); resume from an earlier checkpoint");
    return int(v);
  };
  CheckpointMarker m;
  const int64_t version = get("format_version");
  if (version != kCheckpointFormatVersion)
    fail("checkpoint " + ckpt_dir + ": format version " + std::to_string(version) +
         ", this build reads " + std::to_string(kCheckpointFormatVersion) + "; resume with the build that wrote it");
  m.format_version = int(version);
  m.step = get("step");
  m.layout.world = count("world_size");
  m.rank_files = count("rank_files");
  m.layout.dp = count("layout.dp", 1);
  m.layout.zero1 = get("layout.zero1", 0) != 0;
  m.layout.tp = count("layout.tp", 1);
  m.layout.pp = count("layout.pp", 1);
  return m;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(run_dir)) return out;
  static const std::regex pattern(R"(ckpt_(\d{8}))");
  std::smatch m;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const std::string f = e.path().filename().string();
    if (e.is_directory() && std::regex_match(f, m, pattern)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (has_marker(it->second)) return it->second;
  return "";
}

}  // namespace gpt
