// Fuzz target: the data-mixture config (data/mixture_config.cpp). Its documented
// failure is a std::runtime_error naming the file and line; anything else is a finding.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "data/mixture_config.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = gpt::fuzz::write_input("mixture.ini", data, size);
  try {
    const gpt::data::MixtureConfig cfg = gpt::data::mixture_config_load(path);
    // What the loader promises of a config it accepts.
    if (cfg.sources.empty() || cfg.shuffle_shards < 1) std::abort();
    for (const auto& s : cfg.sources)
      if (s.name.empty() || s.glob.empty() || !(s.weight > 0) || !std::isfinite(s.weight)) std::abort();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
