// Fuzz target: pretrain's INI config file (launch/config.cpp), read as
// `pretrain FILE`. A gpt::Error naming the key or file is the expected outcome of bad
// input; a crash, a sanitizer report or any other exception is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/config.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = gpt::fuzz::write_input("config.ini", data, size);
  std::string prog = "pretrain", file = path;
  std::vector<char*> argv{prog.data(), file.data()};
  gpt::TrainConfig config;
  try {
    gpt::parse_config(int(argv.size()), argv.data(), config);
  } catch (const gpt::Error&) {
  }
  return 0;
}
