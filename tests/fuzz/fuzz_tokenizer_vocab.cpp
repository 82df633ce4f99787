// Fuzz target: the tokenizer's vocabulary files (data/tokenizer_gpt2.cpp, tokenizer.cpp).
// The first byte picks the format: even, the rest is a vocabulary written by
// Tokenizer::save; odd, the rest is GPT-2's encoder.json, a NUL byte, then vocab.bpe.
// A vocabulary that loads must encode and decode a fixed text back to itself. The
// documented failure is a std::runtime_error naming the file; anything else is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool gpt2 = data[0] & 1;
  const uint8_t* rest = data + 1;
  const uint8_t* end = data + size;
  try {
    gpt::data::Tokenizer tok;
    if (gpt2) {
      const uint8_t* nul = std::find(rest, end, uint8_t(0));
      const std::string encoder = gpt::fuzz::write_input("encoder.json", rest, size_t(nul - rest));
      const uint8_t* bpe = nul == end ? end : nul + 1;
      const std::string merges = gpt::fuzz::write_input("vocab.bpe", bpe, size_t(end - bpe));
      tok = gpt::data::Tokenizer::load_gpt2(encoder, merges);
    } else {
      tok = gpt::data::Tokenizer::load(gpt::fuzz::write_input("vocab.txt", rest, size_t(end - rest)));
    }
    // Every loaded vocabulary holds the 256 bytes, so any text round-trips.
    static const char kText[] = "Hello world, \xe2\x82\xac 123 <|endoftext|>\n\n  \xff\x00 done.";
    const std::string text(kText, sizeof kText - 1);
    std::vector<int32_t> ids;
    tok.encode(text, ids);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    if (tok.decode(ids) != text) std::abort();
    (void)tok.identity();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
