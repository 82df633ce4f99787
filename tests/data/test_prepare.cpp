// The prepare tool end to end (run as a program, with a small vocabulary trained here so
// the test needs no downloaded assets), and its JSON-lines reader.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/tools/prepare_input.h"
#include "tests/data/data_test_util.h"

namespace gpt::data {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PrepareJson, ReadsTheTextField) {
  std::string out;
  ASSERT_TRUE(prepare::json_string_field(R"({"id": [1, {"text": "no"}], "text": "a\"b\\n\u00e9\ud83d\ude00"})", "text", out));
  EXPECT_EQ(out, "a\"b\\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_FALSE(prepare::json_string_field(R"({"title": "x"})", "text", out));
  EXPECT_THROW(prepare::json_string_field(R"({"text": "unterminated)", "text", out), std::runtime_error);
  EXPECT_THROW(prepare::json_string_field("not json", "text", out), std::runtime_error);
}

TEST(Prepare, ShardsSplitAndResume) {
  testing::TempDir dir;
  std::vector<std::string> docs = {
      "The first document, a plain text file.\nWith two lines.",
      "Second file: some more words, and more words, and more.",
      "jsonl one: caf\xc3\xa9 \xf0\x9f\x98\x80",
      "jsonl two \"quoted\"\tand tabbed",
      "jsonl three",
      "jsonl four: the last one, long enough to make its own shard perhaps.",
  };
  std::filesystem::create_directories(dir.file("in"));
  std::ofstream(dir.file("in/a.txt")) << docs[0];
  std::ofstream(dir.file("in/b.txt")) << docs[1];
  {
    std::ofstream j(dir.file("in/c.jsonl"));
    j << R"({"text": "jsonl one: caf\u00e9 \ud83d\ude00"})" << "\n\n"
      << R"({"meta": {"x": [1, 2]}, "text": "jsonl two \"quoted\"\tand tabbed"})" << "\n"
      << R"({"text": "jsonl three"})" << "\n"
      << R"({"text": "jsonl four: the last one, long enough to make its own shard perhaps."})" << "\n";
  }
  Tokenizer tok = train_bpe(docs, 300);
  tok.save(dir.file("tiny.vocab"));
  std::string cmd = std::string(GPT_PREPARE_EXE) + " --vocab " + dir.file("tiny.vocab") + " -i " +
                    dir.file("in") + " -o " + dir.file("out") + " --source test --shard-tokens 40" +
                    " --valid-every 3 --threads 1 2> " + dir.file("log");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(dir.file("log"));

  // Read every shard back, in manifest order, and split the documents by EOS.
  std::vector<std::string> train, valid;
  std::istringstream manifest(slurp(dir.file("out/manifest.tsv")));
  std::string line;
  int shards = 0;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    std::string split, file;
    int64_t n = 0, ndocs = 0;
    f >> split >> file >> n >> ndocs;
    ShardReader r(dir.file("out/" + file), tok.identity(), tok.vocab_size());
    ASSERT_EQ(r.info().token_count, n);
    EXPECT_EQ(r.info().meta.source, "test");
    std::vector<int32_t> ids(static_cast<size_t>(n));
    r.read(0, n, ids.data());
    std::vector<int32_t> doc;
    for (int32_t id : ids) {
      if (id != tok.eot_token()) { doc.push_back(id); continue; }
      (split == "valid" ? valid : train).push_back(tok.decode(doc));
      doc.clear();
    }
    ++shards;
  }
  EXPECT_GT(shards, 2);  // 40-token shards: several
  // Documents 2 and 5 (every 3rd, counted from 0 as k % 3 == 2) are held out.
  EXPECT_EQ(valid, (std::vector<std::string>{docs[2], docs[5]}));
  EXPECT_EQ(train, (std::vector<std::string>{docs[0], docs[1], docs[3], docs[4]}));

  // A second run finds the partition complete and rewrites nothing.
  auto stamp = std::filesystem::last_write_time(dir.file("out/train_00000_000.h5"));
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(dir.file("log"));
  EXPECT_NE(slurp(dir.file("log")).find("1 already complete"), std::string::npos) << slurp(dir.file("log"));
  EXPECT_EQ(std::filesystem::last_write_time(dir.file("out/train_00000_000.h5")), stamp);
}

TEST(Prepare, BadJsonNamesFileAndLine) {
  testing::TempDir dir;
  std::ofstream(dir.file("bad.jsonl")) << "{\"text\": \"ok\"}\n{\"text\": 5}\n";
  Tokenizer tok = train_bpe({"ok"}, 260);
  tok.save(dir.file("v"));
  std::string cmd = std::string(GPT_PREPARE_EXE) + " --vocab " + dir.file("v") + " -i " +
                    dir.file("bad.jsonl") + " -o " + dir.file("out") + " 2> " + dir.file("log");
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_NE(slurp(dir.file("log")).find(dir.file("bad.jsonl") + ":2"), std::string::npos) << slurp(dir.file("log"));
}

}  // namespace
}  // namespace gpt::data
