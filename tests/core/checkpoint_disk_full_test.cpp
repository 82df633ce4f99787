// A full disk while a checkpoint file is written: one clear error naming the file, and
// the checkpoint already at that name stays as it was. "Full" is RLIMIT_FSIZE in a child
// process (SIGXFSZ ignored, so writes past the limit fail with EFBIG).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/checkpoint/hdf5_file.h"

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_checkpoint(const std::string& path, int64_t n, float value) {
  gpt::CheckpointWriter w(path);
  std::vector<float> x(size_t(n), value);
  w.write("values", gpt::Shape{n}, x.data());
  w.commit();
}

TEST(CheckpointDiskFull, FailedWriteNamesTheFileAndKeepsThePreviousCheckpoint) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("gpt_ckpt_full_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "rank_00000.h5").string(), msg = (dir / "message.txt").string();
  write_checkpoint(path, 1 << 14, 1.f);  // 64 KiB of values
  const std::string before = file_bytes(path);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    std::string what;
    try {
      rlimit rl{32768, 32768};
      setrlimit(RLIMIT_FSIZE, &rl);
      write_checkpoint(path, 1 << 16, 2.f);  // 256 KiB: past the limit
    } catch (const std::exception& e) {
      what = e.what();
    }
    std::FILE* out = std::fopen(msg.c_str(), "w");
    if (out) std::fputs(what.substr(0, 1000).c_str(), out), std::fclose(out);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (SIGXFSZ?)";
  const std::string what = file_bytes(msg);
  std::printf("error: %s\n", what.c_str());
  EXPECT_NE(what.find("checkpoint " + path), std::string::npos) << what;
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_FALSE(fs::exists(path + ".tmp")) << "the .tmp is removed";
  fs::remove_all(dir);
}

}  // namespace
