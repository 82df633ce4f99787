// Shard format: round trip, both token widths, and the .tmp-then-rename rule.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/shard.h"
#include "tests/data/data_test_util.h"

namespace gpt::data {
namespace {

using testing::TempDir;

void round_trip(int64_t vocab) {
  TempDir dir;
  std::string path = dir.file("a.h5");
  ShardMeta meta = testing::test_meta("books", vocab, "tok-v1");
  std::vector<std::vector<int32_t>> docs = {{1, 2, 3}, {int32_t(vocab - 2)}, {}, {7, 8}};
  {
    ShardWriter w(path, meta);
    for (auto& d : docs) w.add_document(d.data(), d.size());
    EXPECT_FALSE(std::filesystem::exists(path)) << "visible before close";
    EXPECT_TRUE(std::filesystem::exists(path + ".tmp"));
    w.close();
  }
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  ShardInfo info = shard_read_info(path, "tok-v1", vocab);
  EXPECT_EQ(info.token_count, 3 + 1 + 1 + 1 + 0 + 1 + 2 + 1);
  EXPECT_EQ(info.doc_count, 4);
  EXPECT_EQ(info.meta.source, "books");
  EXPECT_EQ(info.meta.eot_token, vocab - 1);

  ShardReader r(path, "tok-v1", vocab);
  std::vector<int32_t> all(size_t(info.token_count));
  r.read(0, info.token_count, all.data());
  const int32_t E = int32_t(vocab - 1);
  EXPECT_EQ(all, (std::vector<int32_t>{1, 2, 3, E, int32_t(vocab - 2), E, E, 7, 8, E}));
  std::vector<int32_t> mid(3);
  r.read(6, 3, mid.data());  // a hyperslab in the middle
  EXPECT_EQ(mid, (std::vector<int32_t>{E, 7, 8}));
  std::vector<int64_t> offsets(4);
  r.read_doc_offsets(0, 4, offsets.data());
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 4, 6, 7}));
}

TEST(Shard, RoundTripUint16) { round_trip(50257); }
TEST(Shard, RoundTripUint32) { round_trip(100277); }

TEST(Shard, LargeShardSpansManyChunks) {
  TempDir dir;
  std::string path = dir.file("big.h5");
  int64_t n = testing::write_synthetic_shard(path, testing::test_meta(), 200000, 3);
  ShardReader r(path, "", 0);
  EXPECT_EQ(r.info().token_count, n);
  std::vector<int32_t> a(static_cast<size_t>(n)), b(5000);
  r.read(0, n, a.data());
  r.read(100000, 5000, b.data());
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin() + 100000));
}

TEST(Shard, AbandonedWriterLeavesNothing) {
  TempDir dir;
  std::string path = dir.file("x.h5");
  {
    ShardWriter w(path, testing::test_meta());
    int32_t ids[2] = {1, 2};
    w.add_document(ids, 2);
  }  // no close(): e.g. the tool crashed or threw
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace gpt::data
