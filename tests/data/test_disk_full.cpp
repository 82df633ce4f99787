// A full disk while `prepare` writes a shard: one clear error naming the file, and the
// shard already at that name stays as it was. The disk is "full" through RLIMIT_FSIZE in
// a child process (SIGXFSZ ignored, so writes past the limit fail with EFBIG), which
// needs no mount and no privileges.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "data/shard.h"
#include "data_test_util.h"

namespace gpt::data {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs f in a child limited to `limit` bytes per file; returns what f threw ("" if nothing).
template <class F>
std::string in_child_with_file_limit(rlim_t limit, F&& f, const std::string& message_file) {
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    std::string what;
    try {
      rlimit rl{limit, limit};
      setrlimit(RLIMIT_FSIZE, &rl);
      f();
    } catch (const std::exception& e) {
      what = e.what();
    }
    // The message goes out through a file made before the limit (written within it).
    std::FILE* out = std::fopen(message_file.c_str(), "w");
    if (out) std::fputs(what.substr(0, 1000).c_str(), out), std::fclose(out);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status)) << "the child died (SIGXFSZ?)";
  return file_bytes(message_file);
}

TEST(DiskFull, ShardWriteFailsNamingTheFileAndKeepsThePreviousShard) {
  testing::TempDir dir;
  const std::string path = dir.file("train_0.h5");
  const ShardMeta meta = testing::test_meta();
  const int64_t tokens = testing::write_synthetic_shard(path, meta, 20000, 1);
  const std::string before = file_bytes(path);
  ASSERT_GT(before.size(), 8000u);
  // A bigger shard at the same name, under a limit smaller than either.
  const std::string what = in_child_with_file_limit(8000, [&] {
    testing::write_synthetic_shard(path, meta, 200000, 2);
  }, dir.file("message.txt"));
  std::printf("error: %s\n", what.c_str());
  EXPECT_NE(what.find("shard " + path + ".tmp"), std::string::npos) << what;
  EXPECT_NE(what.find("disk full?"), std::string::npos) << what;
  EXPECT_NE(what.find("File too large"), std::string::npos) << what;
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_FALSE(std::ifstream(path + ".tmp").good()) << "the .tmp is removed";
  EXPECT_EQ(shard_read_info(path, meta.tokenizer, meta.vocab_size).token_count, tokens);
}

}  // namespace
}  // namespace gpt::data
