#include "core/layers/recompute.h"

#include "core/error.h"

namespace gpt {

Recompute parse_recompute(const std::string& name) {
  if (name == "none") return Recompute::None;
  if (name == "selective") return Recompute::Selective;
  if (name == "full") return Recompute::Full;
  fail("config key 'train.recompute' must be none, selective or full, got '" + name + "'");
}

}  // namespace gpt
