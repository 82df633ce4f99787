// The message of the gpt::Error a call throws, for tests that check what an error says.
#pragma once
#include <functional>
#include <string>

#include "core/error.h"

namespace gpt {

// The message of the Error that f throws ("" when none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace gpt
