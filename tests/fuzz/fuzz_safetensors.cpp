// Fuzz target: a safetensors file (core/checkpoint/safetensors.cpp), as `ckpt
// import-hf` reads a downloaded model. A gpt::Error naming the file and tensor is the
// expected outcome of bad input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/checkpoint/safetensors.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const gpt::TensorMap tensors = gpt::safetensors_read(gpt::fuzz::write_input("model.safetensors", data, size));
    // What the reader promises: each tensor's elements fill its shape exactly.
    for (const auto& [name, t] : tensors) {
      size_t n = 1;
      for (int64_t d : t.shape) n *= size_t(d);
      if (n != t.data.size()) std::abort();
    }
  } catch (const gpt::Error&) {
  }
  return 0;
}
