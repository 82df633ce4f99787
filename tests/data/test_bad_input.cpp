// Bad input ends in one std::runtime_error whose message names the file (and key).
#include <gtest/gtest.h>

#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/mixture_source.h"
#include "tests/data/data_test_util.h"

namespace gpt::data {
namespace {

constexpr int T = 16;

// Runs f, expecting a std::runtime_error whose message contains every `needles`.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    for (auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

class BadInput : public ::testing::Test {
 protected:
  std::string shard(const std::string& name, int64_t tokens = 5000,
                    ShardMeta meta = testing::test_meta()) {
    std::string path = dir.file(name);
    testing::write_synthetic_shard(path, meta, tokens, 7);
    return path;
  }
  std::unique_ptr<BatchSource> open(const std::vector<std::string>& paths, const std::string& tok = "test-tokenizer") {
    MixtureOptions opt;
    opt.expected_tokenizer = tok;
    opt.expected_vocab = 50257;
    return make_mixture_source({{"s", paths, 1.0}}, RankSlot{0, 1, 1, 4, T}, opt);
  }
  testing::TempDir dir;
};

TEST_F(BadInput, TruncatedFile) {
  std::string p = shard("cut.h5", 100000);
  ASSERT_EQ(truncate(p.c_str(), std::filesystem::file_size(p) / 2), 0);
  expect_error([&] { open({p}); }, {p});
}

TEST_F(BadInput, TokenCountDisagreesWithDataset) {
  std::string p = shard("short.h5");
  testing::set_shard_attr(p, "token_count", 123456);
  expect_error([&] { open({p}); }, {p, "truncated or corrupt"});
}

TEST_F(BadInput, OffsetsNotMonotone) {
  std::string p = shard("offsets.h5");
  testing::set_shard_offset(p, 2, 0);  // document 2 "starts" before document 1
  expect_error([&] { ShardReader r(p, "", 0); }, {p, "doc_offsets"});
  // The sampler opens shards lazily, so it reports the same error on first read.
  auto src = open({p});
  Batch b;
  expect_error([&] { src->next(b); }, {p, "doc_offsets"});
}

TEST_F(BadInput, OldFormatVersionSaysHowToFix) {
  std::string p = shard("v0.h5");
  testing::set_shard_attr(p, "format_version", 0);
  expect_error([&] { open({p}); }, {p, "version", "re-run prepare"});
}

// An attribute that should hold one value but holds several: HDF5 reads all of them, so
// the reader must refuse it before reading (ASan caught a stack overflow here, found by
// tests/fuzz/fuzz_shard).
TEST_F(BadInput, HeaderAttributeHoldingSeveralValues) {
  std::string p = shard("vector.h5");
  const int64_t counts[4] = {1, 2, 3, 4};
  testing::replace_shard_attr(p, "token_count", H5T_NATIVE_INT64, 4, counts);
  expect_error([&] { ShardReader r(p, "", 0); }, {p, "'token_count' is not one integer"});
  std::string q = shard("strings.h5");
  const hid_t two_chars = H5Tcopy(H5T_C_S1);
  H5Tset_size(two_chars, 2);
  testing::replace_shard_attr(q, "source", two_chars, 3, "abcdef");
  H5Tclose(two_chars);
  expect_error([&] { ShardReader r(q, "", 0); }, {q, "'source' is not a string"});
}

TEST_F(BadInput, OtherTokenizer) {
  std::string p = shard("other.h5", 5000, testing::test_meta("src", 50257, "some-other-bpe"));
  expect_error([&] { open({p}); }, {p, "some-other-bpe", "test-tokenizer"});
}

TEST_F(BadInput, OtherVocabSize) {
  std::string p = shard("vocab.h5", 5000, testing::test_meta("src", 32000, "test-tokenizer"));
  expect_error([&] { open({p}); }, {p, "vocab"});
}

TEST_F(BadInput, TokenIdOutsideVocabDetectedOnRead) {
  std::string p = shard("ids.h5", 200);
  for (int64_t i = 0; i < 200; ++i) testing::set_shard_token(p, i, 60000);  // uint16, >= 50257
  auto src = open({p});
  Batch b;
  expect_error([&] { src->next(b); }, {p, "60000", "outside the vocab"});
  expect_error([&] { src->next(b); }, {p});  // stays failed, does not hang
}

TEST_F(BadInput, HalfWrittenTmpIsNotAShard) {
  std::string p = dir.file("partial.h5");
  {
    ShardWriter w(p, testing::test_meta());
    int32_t ids[3] = {1, 2, 3};
    w.add_document(ids, 3);
    std::filesystem::copy_file(p + ".tmp", dir.file("copy.h5"));  // as if renamed too early
  }
  expect_error([&] { open({dir.file("copy.h5")}); }, {dir.file("copy.h5")});
}

TEST_F(BadInput, EmptySource) {
  std::string p = dir.file("tiny.h5");
  testing::write_synthetic_shard(p, testing::test_meta(), 5, 1, /*max_doc=*/4);  // < T+1 tokens
  expect_error([&] { open({p}); }, {"'s'", "empty", p});
  expect_error([&] { open({}); }, {"'s'", "no shards"});
}

TEST_F(BadInput, GlobMatchesNothing) {
  shard("a_0.h5");
  std::string cfg = dir.file("mix.ini");
  testing::write_config(cfg, {{"a", "a_*.h5", "", "1"}, {"b", "nothing_*.h5", "", "1"}});
  expect_error([&] { make_mixture_source(cfg, RankSlot{}, 1, false, 0, ""); },
               {cfg, "[source.b]", "glob", "nothing_*.h5"});
  expect_error([&] { make_mixture_source(cfg, RankSlot{}, 1, true, 0, ""); }, {cfg, "valid_glob"});
}

TEST_F(BadInput, BadWeights) {
  shard("a_0.h5");
  std::string cfg = dir.file("mix.ini");
  for (std::string w : {"-1", "0", "abc", "nan", "inf"}) {
    testing::write_config(cfg, {{"a", "a_*.h5", "", w}});
    expect_error([&] { make_mixture_source(cfg, RankSlot{}, 1, false, 0, ""); }, {cfg, "weight"});
  }
  testing::write_config(cfg, {{"a", "a_*.h5", "", ""}});  // missing
  expect_error([&] { make_mixture_source(cfg, RankSlot{}, 1, false, 0, ""); }, {cfg, "'a'", "weight"});
}

TEST_F(BadInput, MalformedConfig) {
  std::string cfg = dir.file("bad.ini");
  {
    std::ofstream out(cfg);
    out << "[source.a]\nglob = x\nwieght = 1\n";
  }
  expect_error([&] { make_mixture_source(cfg, RankSlot{}, 1, false, 0, ""); }, {cfg + ":3", "wieght"});
  expect_error([&] { make_mixture_source(dir.file("missing.ini"), RankSlot{}, 1, false, 0, ""); },
               {dir.file("missing.ini")});
}

}  // namespace
}  // namespace gpt::data
