// Shape of a GPT-2-family model, with the published presets.
#pragma once
#include <string>
#include <vector>

namespace gpt {

struct GPTConfig {
  int n_layer = 2;
  int n_head = 4;
  int n_embd = 64;
  int vocab_size = 512;
  int block_size = 64;  // maximum sequence length (position table rows)

  // Throws gpt::Error naming the offending config key.
  void validate() const;
  // Parameters: embeddings + blocks + final LayerNorm (the head is tied to wte).
  int64_t num_params() const;
  // Training FLOPs per token: 6N + 12 L d T (PaLM's accounting, attention included).
  double flops_per_token(int T) const;
};

// "tiny", "gpt2-124M", "gpt2-350M", "gpt2-774M", "gpt2-1.5B"; throws for other names.
GPTConfig gpt_preset(const std::string& name);
std::vector<std::string> gpt_preset_names();

}  // namespace gpt
