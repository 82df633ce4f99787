#include "tests/parallel/dp_test_support.h"

#include <cmath>

namespace gpt::parallel::testing {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser: a cheap stateless hash
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

int32_t synthetic_token(int64_t sample, int j, int vocab) {
  // Mostly a learnable stride pattern, one position in 5 replaced by noise.
  const uint64_t h = mix(uint64_t(sample) * 1000003ull + uint64_t(j));
  const int64_t stride = 1 + int64_t(mix(uint64_t(sample)) % 5);
  if (h % 5 == 0) return int32_t(h % uint64_t(vocab));
  return int32_t((int64_t(mix(uint64_t(sample) + 7) % uint64_t(vocab)) + stride * j) % vocab);
}

TinyTrainer::TinyTrainer(Communicator& comm, const Group& group, int accum_, DPConfig cfg,
                         TinySetup s)
    : setup(s), accum(accum_) {
  model = std::make_unique<GPT>(setup.model, store);
  store.materialize(Device::CPU);
  store.init(setup.seed);  // same seed on every rank: identical replicas
  dp = std::make_unique<DataParallel>(comm, group, store, AdamWConfig{}, cfg);
  dp->attach(*model);
  acts = model->make_activations();
}

float TinyTrainer::step(int64_t s) {
  const int B = setup.B, T = setup.T, V = setup.model.vocab_size;
  const int64_t G = int64_t(dp->group().size()) * accum * B;
  Tensor tokens = empty({B, T}, DType::I32), targets = empty({B, T}, DType::I32);
  store.zero_grads();
  dp->begin_step();
  double loss_sum = 0;
  for (int m = 0; m < accum; ++m) {
    dp->begin_micro(m == accum - 1);
    for (int b = 0; b < B; ++b) {
      const int64_t sample = s * G + int64_t(dp->group().rank * accum + m) * B + b;
      for (int j = 0; j < T; ++j) {
        tokens.i32()[b * T + j] = synthetic_token(sample, j, V);
        targets.i32()[b * T + j] = synthetic_token(sample, j + 1, V);
      }
    }
    loss_sum += model->forward_train(*acts, tokens, &targets, 1.f / float(B * T * accum));
    if (before_backward) before_backward(s, m);
    model->backward(*acts, nullptr);
  }
  dp->finish_grads();
  last_norm = dp->clip_and_step(setup.lr, setup.clip);
  return dp->average_loss(float(loss_sum / accum));
}

std::vector<float> TinyTrainer::params() const {
  return to_host_f32(const_cast<ParamStore&>(store).flat_values());
}

double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += double(a[i] - b[i]) * double(a[i] - b[i]);
    ref += double(b[i]) * double(b[i]);
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(diff) / std::sqrt(ref);
}

}  // namespace gpt::parallel::testing
