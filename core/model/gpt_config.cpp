#include "core/model/gpt_config.h"

#include "core/error.h"

namespace gpt {

void GPTConfig::validate() const {
  auto positive = [](int v, const char* key) {
    GPT_CHECK(v > 0, std::string("config key '") + key + "' must be positive, got " +
                         std::to_string(v));
  };
  positive(n_layer, "model.n_layer");
  positive(n_head, "model.n_head");
  positive(n_embd, "model.n_embd");
  positive(vocab_size, "model.vocab_size");
  positive(block_size, "model.block_size");
  GPT_CHECK(n_embd % n_head == 0, "config key 'model.n_embd' (" + std::to_string(n_embd) +
                                      ") is not divisible by 'model.n_head' (" +
                                      std::to_string(n_head) + ")");
}

int64_t GPTConfig::num_params() const {
  const int64_t C = n_embd, L = n_layer;
  int64_t per_block = 2 * 2 * C            // two LayerNorms
                      + C * 3 * C + 3 * C  // qkv
                      + C * C + C          // attention projection
                      + C * 4 * C + 4 * C  // mlp fc
                      + 4 * C * C + C;     // mlp projection
  return int64_t(vocab_size) * C + int64_t(block_size) * C + L * per_block + 2 * C;
}

double GPTConfig::flops_per_token(int T) const {
  return 6.0 * double(num_params()) + 12.0 * n_layer * double(n_embd) * T;
}

GPTConfig gpt_preset(const std::string& name) {
  GPTConfig c;
  c.vocab_size = 50257;
  c.block_size = 1024;
  if (name == "tiny") {
    c.n_layer = 4, c.n_head = 4, c.n_embd = 128, c.block_size = 256;
  } else if (name == "gpt2-124M") {
    c.n_layer = 12, c.n_head = 12, c.n_embd = 768;
  } else if (name == "gpt2-350M") {
    c.n_layer = 24, c.n_head = 16, c.n_embd = 1024;
  } else if (name == "gpt2-774M") {
    c.n_layer = 36, c.n_head = 20, c.n_embd = 1280;
  } else if (name == "gpt2-1.5B") {
    c.n_layer = 48, c.n_head = 25, c.n_embd = 1600;
  } else {
    std::string known;
    for (auto& n : gpt_preset_names()) known += " " + n;
    fail("config key 'model.preset': unknown preset '" + name + "' (known:" + known + ")");
  }
  return c;
}

std::vector<std::string> gpt_preset_names() {
  return {"tiny", "gpt2-124M", "gpt2-350M", "gpt2-774M", "gpt2-1.5B"};
}

}  // namespace gpt
