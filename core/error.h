// One exception type for every user-facing failure: the message names the file, key or
// rank at fault, and launch/ prints it as a single line before exiting non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace gpt {

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] inline void fail(const std::string& what) { throw Error(what); }

#define GPT_CHECK(cond, msg)                      \
  do {                                            \
    if (!(cond)) ::gpt::fail(std::string(msg));   \
  } while (0)

}  // namespace gpt
