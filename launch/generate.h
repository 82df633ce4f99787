// Autoregressive sampling from a trained model (temperature, top-k), streaming each
// token to a callback as soon as it is drawn.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/model/model.h"
#include "core/rng.h"

namespace gpt {

struct SampleConfig {
  int tokens = 64;
  float temperature = 1.0f;
  int top_k = 40;  // 0 = the whole vocabulary
  int window = 0;  // context length used; 0 = model.block_size
  int vocab = 0;   // draw only ids below this (the tokenizer's size); 0 = every model row
};

// Draws from softmax(logits / temperature) restricted to the top_k largest (exposed for tests).
int32_t sample_token(const float* logits, int V, float temperature, int top_k, Rng& rng);

std::vector<int32_t> generate(Model& model, std::vector<int32_t> prompt, const SampleConfig& cfg,
                              Rng& rng, const std::function<void(int32_t)>& on_token);

}  // namespace gpt
