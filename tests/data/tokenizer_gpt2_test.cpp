// Exactness: on megabytes of varied real text our GPT-2 ids equal js-tiktoken's, with
// zero mismatches. The text is built by data/tools/make_tokenizer_corpus.py and the
// reference ids are computed at test time by data/tools/tiktoken_reference.js.
#include <cstdlib>
#include <cstring>

#include "tests/data/tokenizer_test_support.h"

namespace gpt::data {
namespace {

struct Corpus {
  std::string text;
  std::vector<size_t> offsets;  // n + 1
  size_t size() const { return offsets.size() - 1; }
  std::string_view doc(size_t i) const {
    return std::string_view(text).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return rc;
}

TEST(TokenizerGpt2, MatchesJsTiktokenOnCorpus) {
  GPT2_OR_SKIP();
  const std::string js_dir = test::js_tiktoken_dir();
  if (!test::file_exists(js_dir + "/node_modules/js-tiktoken/package.json"))
    GTEST_SKIP() << "js-tiktoken missing in " << js_dir << " (run scripts/fetch_assets.sh)";
  if (std::string(GPT_NODE).find("NOTFOUND") != std::string::npos)
    GTEST_SKIP() << "node not found at configure time (needed to run js-tiktoken)";
  const std::string corpus_dir = GPT_TOKENIZER_CORPUS_DIR;
  const std::string tools = std::string(GPT_SOURCE_DIR) + "/data/tools";
  ASSERT_EQ(run(std::string(GPT_PYTHON) + " " + tools + "/make_tokenizer_corpus.py " + corpus_dir), 0);
  const std::string ref_path = corpus_dir + "/reference.ids";
  ASSERT_EQ(run(std::string(GPT_NODE) + " " + tools + "/tiktoken_reference.js " + js_dir + " " +
                corpus_dir + " " + ref_path), 0);

  Corpus corpus;
  corpus.text = test::read_file(corpus_dir + "/corpus.txt");
  std::istringstream offsets(test::read_file(corpus_dir + "/corpus.offsets"));
  for (size_t o; offsets >> o;) corpus.offsets.push_back(o);
  ASSERT_GE(corpus.offsets.size(), 2u);
  ASSERT_EQ(corpus.offsets.back(), corpus.text.size());
  ASSERT_GE(corpus.text.size(), size_t(5) << 20) << "the acceptance asks for >= 5 MB of text";

  std::string ref_bytes = test::read_file(ref_path);
  ASSERT_EQ(ref_bytes.size() % 4, 0u);
  std::vector<int32_t> ref(ref_bytes.size() / 4);
  std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());

  std::vector<std::string_view> docs;
  for (size_t i = 0; i < corpus.size(); ++i) docs.push_back(corpus.doc(i));
  std::vector<std::vector<int32_t>> ours;
  tok.encode_batch(docs, ours, 0);

  size_t pos = 0, mismatched_docs = 0, tokens = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    ASSERT_LT(pos, ref.size()) << "reference ids end early at document " << i;
    size_t n = size_t(ref[pos++]);
    ASSERT_LE(pos + n, ref.size());
    std::vector<int32_t> theirs(ref.begin() + pos, ref.begin() + pos + n);
    pos += n;
    tokens += n;
    if (ours[i] == theirs) continue;
    if (++mismatched_docs > 5) continue;  // report the first few in detail
    size_t k = 0;
    while (k < n && k < ours[i].size() && ours[i][k] == theirs[k]) ++k;
    auto context = [&](const std::vector<int32_t>& ids) {
      size_t b = k >= 3 ? k - 3 : 0, e = std::min(ids.size(), k + 4);
      std::string s;
      for (size_t j = b; j < e; ++j) s += std::to_string(ids[j]) + "[" + tok.decode(&ids[j], 1) + "] ";
      return s;
    };
    ADD_FAILURE() << "document " << i << " differs at token " << k << "\n  ours:        "
                  << context(ours[i]) << "\n  js-tiktoken: " << context(theirs);
  }
  EXPECT_EQ(pos, ref.size());
  EXPECT_EQ(mismatched_docs, 0u) << "of " << corpus.size() << " documents";
  std::printf("compared %zu documents, %.2f MB, %zu tokens\n", corpus.size(),
              corpus.text.size() / 1e6, tokens);

  // Decoding our ids gives the text back.
  for (size_t i = 0; i < corpus.size(); ++i) ASSERT_EQ(tok.decode(ours[i]), corpus.doc(i)) << i;
}

}  // namespace
}  // namespace gpt::data
