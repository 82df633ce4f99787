// train_bpe: a merge sequence computed by hand, and a trained vocabulary that
// round-trips, compresses and survives save/load.
#include <cmath>
#include <random>

#include "tests/data/tokenizer_test_support.h"

namespace gpt::data {
namespace {

using Ids = std::vector<int32_t>;

Ids encode(const Tokenizer& tok, const std::string& s) {
  Ids ids;
  tok.encode(s, ids);
  return ids;
}

// Pieces "abcabc" and "abd" (no spaces, so one piece per document). Pair counts:
// ab 3, bc 2, ca 1, bd 1 -> merge a+b = 256. Then (ab,c) 2, (c,ab) 1, (ab,d) 1
// -> ab+c = 257. Then (abc,abc) 1, (ab,d) 1: a tie, the smaller pair (256,'d')
// wins -> abd = 258; last abc+abc = 259. <|endoftext|> = 260.
TEST(TokenizerTrain, HandComputedMerges) {
  Tokenizer tok = train_bpe({"abcabc", "abd"}, 1000);
  ASSERT_EQ(tok.vocab_size(), 261);  // stopped early: no pair left
  EXPECT_EQ(tok.token_bytes(256), "ab");
  EXPECT_EQ(tok.token_bytes(257), "abc");
  EXPECT_EQ(tok.token_bytes(258), "abd");
  EXPECT_EQ(tok.token_bytes(259), "abcabc");
  EXPECT_EQ(tok.eot_token(), 260);
  EXPECT_EQ(tok.token_bytes(260), "<|endoftext|>");
  EXPECT_EQ(encode(tok, "abcabc"), (Ids{259}));
  EXPECT_EQ(encode(tok, "abd"), (Ids{258}));
  // a b c a b: merge the leftmost ab (256) first, then the other ab, then ab+c;
  // abc+ab is not a token.
  EXPECT_EQ(encode(tok, "abcab"), (Ids{257, 256}));
  EXPECT_EQ(encode(tok, "xab"), (Ids{'x', 256}));
  // Capped vocabulary: 256 bytes + 2 merges + eot.
  Tokenizer capped = train_bpe({"abcabc", "abd"}, 259);
  EXPECT_EQ(capped.vocab_size(), 259);
  EXPECT_EQ(encode(capped, "abcabc"), (Ids{257, 257}));
}

// Text over a fixed lexicon of 3000 words made of syllables (plus some non-Latin words
// and punctuation), drawn Zipf-like so frequent words dominate as in real text.
std::vector<std::string> pseudo_english(uint32_t seed, int docs) {
  static const std::vector<std::string> lexicon = [] {
    const char* syllables[] = {"ka", "ter", "ion", "al", "re", "in", "st", "ou", "pro", "com", "ed",
                               "ing", "th", "er", "an", "de", "mi", "lo", "gra", "tion", "ve",
                               "Κό", "σμ", "ми", "р", "世", "界", "'s", "7", "42"};
    std::mt19937 rng(0);
    std::vector<std::string> words;
    for (int i = 0; i < 3000; ++i) {
      std::string w;
      for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) w += syllables[rng() % 30];
      words.push_back(w);
    }
    return words;
  }();
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (int d = 0; d < docs; ++d) {
    std::string s;
    for (int k = 0; k < 400; ++k) {
      size_t w = size_t(lexicon.size() * std::pow(double(rng()) / rng.max(), 3.0)) % lexicon.size();
      s += lexicon[w];
      s += (k % 17 == 16) ? ".\n" : " ";
    }
    out.push_back(s);
  }
  return out;
}

TEST(TokenizerTrain, RoundTripsAndCompresses) {
  auto train_docs = pseudo_english(1, 100);
  Tokenizer tok = train_bpe(train_docs, 600);
  EXPECT_EQ(tok.vocab_size(), 600);
  EXPECT_EQ(tok.eot_token(), 599);
  EXPECT_EQ(tok.identity().rfind("bpe:", 0), 0u);
  EXPECT_EQ(train_bpe(train_docs, 600).identity(), tok.identity()) << "training is deterministic";

  size_t bytes = 0, tokens = 0;
  for (const auto& doc : pseudo_english(2, 20)) {  // held-out text
    Ids ids = encode(tok, doc);
    ASSERT_EQ(tok.decode(ids), doc);
    bytes += doc.size();
    tokens += ids.size();
  }
  EXPECT_GT(double(bytes) / tokens, 3.0) << "bytes per token";

  std::mt19937 rng(3);
  std::string noise(5000, 0);
  for (auto& c : noise) c = char(rng());
  EXPECT_EQ(tok.decode(encode(tok, noise)), noise);

  std::string path = testing::TempDir() + "/tokenizer_trained.vocab";
  tok.save(path);
  Tokenizer loaded = Tokenizer::load(path);
  EXPECT_EQ(loaded.identity(), tok.identity());
  EXPECT_EQ(encode(loaded, train_docs[0]), encode(tok, train_docs[0]));
  std::remove(path.c_str());
}

TEST(TokenizerTrain, RejectsTinyVocab) { EXPECT_THROW(train_bpe({"abc"}, 100), std::runtime_error); }

}  // namespace
}  // namespace gpt::data
