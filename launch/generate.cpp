#include "launch/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/ops.h"

namespace gpt {

int32_t sample_token(const float* logits, int V, float temperature, int top_k, Rng& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  int k = (top_k <= 0 || top_k > V) ? V : top_k;
  // Ties broken by id so the draw is deterministic for a given RNG state.
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
  if (temperature <= 0.f) return ids[0];  // greedy
  std::vector<double> p(static_cast<size_t>(k));
  double mx = logits[ids[0]], sum = 0.0;
  for (int i = 0; i < k; ++i) sum += p[size_t(i)] = std::exp((logits[ids[size_t(i)]] - mx) / temperature);
  double u = double(rng.uniform()) * sum;
  for (int i = 0; i < k; ++i) {
    u -= p[size_t(i)];
    if (u < 0.0) return ids[size_t(i)];
  }
  return ids[size_t(k - 1)];
}

std::vector<int32_t> generate(Model& model, std::vector<int32_t> tokens, const SampleConfig& cfg,
                              Rng& rng, const std::function<void(int32_t)>& on_token) {
  const GPTConfig& mc = model.config();
  GPT_CHECK(!tokens.empty(), "generate: empty prompt");
  const int W = cfg.window > 0 ? std::min(cfg.window, mc.block_size) : mc.block_size;
  const int V = mc.vocab_size, drawable = cfg.vocab > 0 ? std::min(cfg.vocab, V) : V;
  // A fixed [1, W] window: causal attention makes the padding after the last real
  // token irrelevant, and a fixed shape lets the model reuse its buffers every token.
  // Positions restart at the window's first token, learned (GPT-2) or rotary (LLaMA,
  // whose RoPE rotates row t by angle t: the same positions the model trained on).
  Tensor window = zeros({1, W}, DType::I32, Device::CPU);
  // One device copy of the window for the whole draw: a tensor freed per token would
  // synchronise the GPU each time.
  Tensor input = to_device(window, model.device());
  const Ops& ops = ops_for(model.device());
  std::unique_ptr<Activations> acts = model.make_activations();
  for (int i = 0; i < cfg.tokens; ++i) {
    int n = int(std::min<size_t>(tokens.size(), size_t(W)));
    std::fill(window.i32(), window.i32() + W, 0);
    std::copy(tokens.end() - n, tokens.end(), window.i32());
    ops.copy_from_host(input.raw(), window.raw(), window.nbytes());
    model.forward(*acts, input, nullptr);
    // The whole row, also when the head computes a vocabulary slice per TP rank.
    std::vector<float> logits = model.vocabulary_logits(*acts, n - 1);
    int32_t next = sample_token(logits.data(), drawable, cfg.temperature, cfg.top_k, rng);
    tokens.push_back(next);
    if (on_token) on_token(next);
  }
  return tokens;
}

}  // namespace gpt
