// Activation recomputation, a choice every block family makes the same way: what its
// forward keeps for backward and what backward recomputes (see block.h, llama_block.h).
#pragma once
#include <string>

namespace gpt {

enum class Recompute { None, Selective, Full };
Recompute parse_recompute(const std::string& name);  // "none" | "selective" | "full"

}  // namespace gpt
