// Tokenizer behaviour that needs no reference encoder: pre-tokenisation, round trips
// of arbitrary bytes, pathological inputs, save/load, errors.
#include <cstdio>
#include <random>

#include "data/tokenizer_bpe.h"
#include "data/tokenizer_pretokenize.h"
#include "tests/data/tokenizer_test_support.h"

namespace gpt::data {
namespace {

using test::read_file;
using test::write_file;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  pretokenize(reinterpret_cast<const uint8_t*>(s.data()), s.size(),
              [&](size_t b, size_t e) { out.push_back(s.substr(b, e - b)); });
  return out;
}

using Pieces = std::vector<std::string>;

TEST(TokenizerPretokenize, FollowsGpt2Regex) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("it's 'S"), (Pieces{"it", "'s", " '", "S"}));
  EXPECT_EQ(split("'ll've'd'm't're"), (Pieces{"'ll", "'ve", "'d", "'m", "'t", "'re"}));
  EXPECT_EQ(split("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(split("a \n\n b"), (Pieces{"a", " \n\n", " b"}));
  EXPECT_EQ(split("x\n\ny"), (Pieces{"x", "\n", "\n", "y"}));
  EXPECT_EQ(split("end   "), (Pieces{"end", "   "}));
  EXPECT_EQ(split("123abc 456"), (Pieces{"123", "abc", " 456"}));
  EXPECT_EQ(split("?! ...x"), (Pieces{"?!", " ...", "x"}));
  EXPECT_EQ(split("Καλημέρα κόσμε"), (Pieces{"Καλημέρα", " κόσμε"}));
  EXPECT_EQ(split("\u3000x"), (Pieces{"\u3000", "x"}));      // ideographic space is \s
  EXPECT_EQ(split("a\u00A0 b"), (Pieces{"a", "\u00A0", " b"}));
  EXPECT_EQ(split("\xEF\xBB\xBFz"), (Pieces{"\xEF\xBB\xBF", "z"}));  // JS \s has U+FEFF
  EXPECT_EQ(split("a\x1C" "b"), (Pieces{"a", "\x1C", "b"}));  // ...but not U+001C
  EXPECT_EQ(split("\xFF\xFE" "ab"), (Pieces{"\xFF\xFE", "ab"}));  // invalid bytes: "other"
  EXPECT_EQ(split("a\xC3"), (Pieces{"a", "\xC3"}));                // truncated sequence
  EXPECT_EQ(split("\xED\xA0\x80"), (Pieces{"\xED\xA0\x80"}));      // encoded surrogate
  EXPECT_EQ(split(""), (Pieces{}));
}

TEST(TokenizerPretokenize, CharClasses) {
  EXPECT_EQ(char_class('a'), CharClass::letter);
  EXPECT_EQ(char_class(0x4E2D), CharClass::letter);   // 中
  EXPECT_EQ(char_class(0x0661), CharClass::number);   // Arabic-Indic one
  EXPECT_EQ(char_class(0x2167), CharClass::number);   // Roman numeral eight (Nl)
  EXPECT_EQ(char_class(0x3000), CharClass::space);
  EXPECT_EQ(char_class(0x1F600), CharClass::other);   // emoji
  EXPECT_EQ(char_class(0x20000), CharClass::letter);  // CJK extension B
  EXPECT_EQ(char_class(0x110000), CharClass::other);
}

// A small vocabulary trained here, so these tests run without the GPT-2 assets.
const Tokenizer& small_vocab() {
  static const Tokenizer tok = [] {
    std::vector<std::string> docs = {
        "The quick brown fox jumps over the lazy dog. It's the dog's day; they're here.",
        "int main() { return 0; }  // code\n\n\tindented    spaces   ",
        "Καλημέρα κόσμε. Привет, мир! 你好，世界。 🎉🎉 12345 67890"};
    for (int i = 0; i < 50; ++i) docs.push_back(docs[i % 3] + " " + std::to_string(i * 7919));
    return train_bpe(docs, 400);
  }();
  return tok;
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  // A mix of arbitrary bytes, valid multi-byte characters, and broken sequences.
  static const char* snippets[] = {"é", "中", "😀", "\xC3", "\xE4\xB8", "\xF0\x9F\x98", " ", "  ",
                                   "\n", "'s", "a", "Z", "9", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80"};
  std::string s;
  while (s.size() < n) {
    if (rng() % 2)
      s += char(rng() & 0xFF);
    else
      s += snippets[rng() % (sizeof snippets / sizeof *snippets)];
  }
  return s;
}

void expect_round_trips(const Tokenizer& tok, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < 300; ++i) {
    std::string s = random_bytes(rng, rng() % 3000);
    std::vector<int32_t> ids;
    tok.encode(s, ids);
    ASSERT_EQ(tok.decode(ids), s) << "case " << i;
    for (int32_t id : ids) ASSERT_NE(id, tok.eot_token());
  }
}

TEST(Tokenizer, RandomBytesRoundTripSmallVocab) { expect_round_trips(small_vocab(), 1); }

TEST(Tokenizer, RandomBytesRoundTripGpt2) {
  GPT2_OR_SKIP();
  expect_round_trips(tok, 2);
}

TEST(Tokenizer, EncodeAppends) {
  const Tokenizer& tok = small_vocab();
  std::vector<int32_t> ids = {7};
  tok.encode("dog", ids);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 7);
  EXPECT_EQ(tok.decode(ids.data() + 1, ids.size() - 1), "dog");
}

// Long pieces take the heap merge, short ones the quadratic scan: same rule, same ids.
TEST(Tokenizer, ShortAndLongMergeAgree) {
  GPT2_OR_SKIP();
  const Vocab& v = vocab_of(tok);
  std::mt19937 rng(3);
  const std::string alphabet = "aaaabbcdeeeeefghiilmnnoorssttu  ";
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    size_t n = 2 + rng() % 63;
    for (size_t k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    std::vector<int32_t> a, b;
    bpe_merge_for_test(v, reinterpret_cast<const uint8_t*>(s.data()), s.size(), false, a);
    bpe_merge_for_test(v, reinterpret_cast<const uint8_t*>(s.data()), s.size(), true, b);
    ASSERT_EQ(a, b) << "piece '" << s << "'";
  }
}

// A megabyte of one letter, of spaces, and of random letters is a single piece each;
// they must finish (the heap merge is O(n log n)) and round-trip. (GPT-2 has no
// multi-space tokens, so spaces do not compress there.)
TEST(Tokenizer, PathologicalInputs) {
  const Tokenizer& tok = test::gpt2() ? *test::gpt2() : small_vocab();
  std::mt19937 rng(4);
  std::string letters(1 << 18, 'a');
  for (auto& c : letters) c = char('a' + rng() % 26);
  std::vector<int32_t> a_ids;
  tok.encode(std::string(1 << 20, 'a'), a_ids);
  if (test::gpt2()) {
    EXPECT_EQ(a_ids.size(), size_t(1 << 18));  // "aaaa" is a GPT-2 token
  }
  for (const std::string& s : {std::string(1 << 20, 'a'), std::string(1 << 20, ' '),
                               std::string(1 << 20, '\n'), letters}) {
    std::vector<int32_t> ids;
    tok.encode(s, ids);
    EXPECT_LE(ids.size(), s.size());
    EXPECT_EQ(tok.decode(ids), s);
  }
}

TEST(Tokenizer, EncodeBatchMatchesEncode) {
  const Tokenizer& tok = test::gpt2() ? *test::gpt2() : small_vocab();
  std::mt19937 rng(5);
  std::vector<std::string> docs;
  for (int i = 0; i < 64; ++i) docs.push_back(random_bytes(rng, rng() % 5000));
  std::vector<std::string_view> views(docs.begin(), docs.end());
  std::vector<std::vector<int32_t>> batch;
  tok.encode_batch(views, batch, 4);
  ASSERT_EQ(batch.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    std::vector<int32_t> ids;
    tok.encode(docs[i], ids);
    EXPECT_EQ(batch[i], ids) << "document " << i;
  }
}

TEST(Tokenizer, Gpt2Basics) {
  GPT2_OR_SKIP();
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eot_token(), 50256);
  std::vector<int32_t> ids;
  tok.encode("Hello world", ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{15496, 995}));
  int32_t eot = tok.eot_token();
  EXPECT_EQ(tok.decode(&eot, 1), "<|endoftext|>");
  ids.clear();
  tok.encode("<|endoftext|>", ids);  // text, never the special id
  EXPECT_EQ(tok.decode(ids), "<|endoftext|>");
  for (int32_t id : ids) EXPECT_NE(id, eot);
  EXPECT_EQ(tok.identity().rfind("gpt2-bpe:", 0), 0u);
  int32_t bad = 50257;
  EXPECT_THROW(tok.decode(&bad, 1), std::runtime_error);
}

TEST(Tokenizer, SaveLoadKeepsIdentityAndIds) {
  const Tokenizer& tok = test::gpt2() ? *test::gpt2() : small_vocab();
  std::string path = testing::TempDir() + "/tokenizer_saved.vocab";
  tok.save(path);
  Tokenizer loaded = Tokenizer::load(path);
  EXPECT_EQ(loaded.identity(), tok.identity());
  EXPECT_EQ(loaded.vocab_size(), tok.vocab_size());
  EXPECT_EQ(loaded.eot_token(), tok.eot_token());
  std::mt19937 rng(6);
  std::string s = random_bytes(rng, 20000) + " The quick brown fox's tail.";
  std::vector<int32_t> a, b;
  tok.encode(s, a);
  loaded.encode(s, b);
  EXPECT_EQ(a, b);
  std::remove(path.c_str());
}

// Errors name the file, so the user knows what to fix.
template <typename Fn>
void expect_error_naming(Fn fn, const std::string& path) {
  try {
    fn();
    ADD_FAILURE() << "no error for " << path;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, BadFilesGiveClearErrors) {
  std::string dir = testing::TempDir();
  std::string missing = dir + "/no_such_encoder.json";
  std::string bpe = dir + "/tok_vocab.bpe", json = dir + "/tok_encoder.json";
  write_file(bpe, "#version: 0.2\n");
  write_file(json, "{\"a\": 0, \"b\": ");  // truncated
  expect_error_naming([&] { Tokenizer::load_gpt2(missing, bpe); }, missing);
  expect_error_naming([&] { Tokenizer::load_gpt2(json, bpe); }, json);
  write_file(json, "{\"a\": 0}");  // too few tokens
  expect_error_naming([&] { Tokenizer::load_gpt2(json, bpe); }, json);
  write_file(json, "{\"a\": -}");  // a sign without digits (found by tests/fuzz/fuzz_tokenizer_vocab)
  expect_error_naming([&] { Tokenizer::load_gpt2(json, bpe); }, json);
  std::string vocab = dir + "/tok_garbage.vocab";
  write_file(vocab, "not a vocabulary\n");
  expect_error_naming([&] { Tokenizer::load(vocab); }, vocab);
  // A header claiming more tokens than the file holds (and than memory could): an error
  // at the end of the file, not an allocation of that size.
  write_file(vocab, "gptrain-bpe-vocab 1\nname x\nvocab_size 100000000000\neot 5\nmerges 0\n00\n");
  expect_error_naming([&] { Tokenizer::load(vocab); }, vocab);
  if (test::gpt2()) {
    // The real encoder.json with a truncated merge list.
    std::string real_json = test::gpt2_dir() + "/encoder.json";
    std::string merges = read_file(test::gpt2_dir() + "/vocab.bpe");
    write_file(bpe, merges.substr(0, merges.size() / 2));
    expect_error_naming([&] { Tokenizer::load_gpt2(real_json, bpe); }, bpe);
    write_file(bpe, "#version: 0.2\nnot-a-token-pair\n");
    expect_error_naming([&] { Tokenizer::load_gpt2(real_json, bpe); }, bpe);
    // A saved vocabulary cut short.
    test::gpt2()->save(vocab);
    std::string saved = read_file(vocab);
    write_file(vocab, saved.substr(0, saved.size() / 3));
    expect_error_naming([&] { Tokenizer::load(vocab); }, vocab);
  }
  std::remove(bpe.c_str());
  std::remove(json.c_str());
  std::remove(vocab.c_str());
}

}  // namespace
}  // namespace gpt::data
