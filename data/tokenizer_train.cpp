// Training a byte-level BPE vocabulary: count the pre-tokenised pieces once, then
// merge pair by pair, updating pair counts only in the words a merge touches.
#include <algorithm>
#include <queue>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include "data/tokenizer.h"
#include "data/tokenizer_bpe.h"
#include "data/tokenizer_pretokenize.h"

namespace gpt::data {
namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct Word {
  std::vector<int32_t> syms;
  int64_t count = 0;
};

}  // namespace

Tokenizer train_bpe(const std::vector<std::string>& documents, int vocab_size) {
  if (vocab_size < 257)
    throw std::runtime_error("train_bpe: vocab_size " + std::to_string(vocab_size) +
                             " is below 257 (256 bytes + <|endoftext|>)");
  // Unique pieces with their counts; BPE never merges across pieces.
  std::unordered_map<std::string, int64_t> piece_count;
  for (const auto& doc : documents) {
    const auto* s = reinterpret_cast<const uint8_t*>(doc.data());
    pretokenize(s, doc.size(), [&](size_t b, size_t e) { ++piece_count[doc.substr(b, e - b)]; });
  }
  std::vector<Word> words;
  words.reserve(piece_count.size());
  for (const auto& [piece, count] : piece_count) {
    Word w;
    for (unsigned char c : piece) w.syms.push_back(c);
    w.count = count;
    words.push_back(std::move(w));
  }
  // Iteration order of the map is unspecified; sort so training is deterministic.
  std::sort(words.begin(), words.end(), [](const Word& x, const Word& y) { return x.syms < y.syms; });

  auto v = std::make_shared<Vocab>();
  v->name = "bpe";
  for (int b = 0; b < 256; ++b) v->tokens.push_back(std::string(1, char(b)));
  std::unordered_map<std::string, int32_t> id_of;
  for (int b = 0; b < 256; ++b) id_of[v->tokens[b]] = b;

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;  // may hold stale entries
  // Max-heap of (count, -key): most frequent first, then the smaller (left, right).
  using Candidate = std::pair<int64_t, int64_t>;
  std::priority_queue<Candidate> heap;
  auto candidate = [](int64_t count, uint64_t key) { return Candidate{count, -int64_t(key)}; };

  for (int32_t w = 0; w < int32_t(words.size()); ++w) {
    const auto& syms = words[w].syms;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      uint64_t k = pair_key(syms[i], syms[i + 1]);
      pair_count[k] += words[w].count;
      auto& list = pair_words[k];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  for (const auto& [k, c] : pair_count) heap.push(candidate(c, k));

  std::vector<int32_t> stamp(words.size(), -1);  // last merge that visited each word
  int32_t step = 0;
  std::vector<uint64_t> touched;
  while (int(v->tokens.size()) < vocab_size - 1 && !heap.empty()) {
    auto [count, neg_key] = heap.top();
    heap.pop();
    uint64_t key = uint64_t(-neg_key);
    auto it = pair_count.find(key);
    if (it == pair_count.end() || it->second != count || count <= 0) continue;  // stale
    int32_t a = int32_t(key >> 32), b = int32_t(uint32_t(key));
    std::string bytes = v->tokens[a] + v->tokens[b];
    // Another split of the same bytes may already be a token: reuse it, keeping every
    // token's bytes unique.
    int32_t merged;
    auto found = id_of.find(bytes);
    if (found != id_of.end()) {
      merged = found->second;
    } else {
      merged = int32_t(v->tokens.size());
      v->tokens.push_back(bytes);
      id_of.emplace(bytes, merged);
      v->merges.push_back({a, b});
    }
    ++step;
    touched.clear();
    std::vector<int32_t> where = std::move(pair_words[key]);
    pair_words.erase(key);
    for (int32_t w : where) {
      if (stamp[w] == step) continue;
      stamp[w] = step;
      Word& word = words[w];
      auto& syms = word.syms;
      // Take the word's pairs out, merge left to right, put its pairs back.
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        uint64_t k = pair_key(syms[i], syms[i + 1]);
        pair_count[k] -= word.count;
        touched.push_back(k);
      }
      size_t out = 0;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
          syms[out++] = merged;
          ++i;
        } else {
          syms[out++] = syms[i];
        }
      }
      syms.resize(out);
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        uint64_t k = pair_key(syms[i], syms[i + 1]);
        pair_count[k] += word.count;
        touched.push_back(k);
        auto& list = pair_words[k];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      int64_t c = pair_count[k];
      if (c > 0) heap.push(candidate(c, k));
    }
  }
  v->eot = int32_t(v->tokens.size());
  v->tokens.push_back("<|endoftext|>");
  v->build_tables();
  return Tokenizer(std::move(v));
}

}  // namespace gpt::data
