#include "launch/synthetic_source.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

namespace gpt {

SyntheticSource::SyntheticSource(int vocab_size, data::RankSlot slot, uint64_t seed, bool validation)
    : vocab_(vocab_size), alphabet_(std::min(vocab_size, 97)), slot_(slot),
      seed_(seed ^ (validation ? 0x5eedfacecafef00dull : 0)) {}

void SyntheticSource::sample(int64_t g, int32_t* row) const {
  Rng rng(seed_ ^ (uint64_t(g) * 0x9e3779b97f4a7c15ull));
  int64_t start = int64_t(rng.next_u64() % uint64_t(alphabet_));
  int64_t stride = 1 + int64_t(rng.next_u64() % 4);
  for (int t = 0; t <= slot_.T; ++t) row[t] = int32_t((start + t * stride) % alphabet_);
}

void SyntheticSource::next(data::Batch& out) {
  const int64_t G = global_batch();
  const int64_t first = step_ * G + (int64_t(slot_.dp_rank) * slot_.accum + micro_) * slot_.B;
  out.B = slot_.B;
  out.T = slot_.T;
  out.tokens.resize(size_t(slot_.B) * (slot_.T + 1));
  out.source.assign(size_t(slot_.B), 0);
  for (int b = 0; b < slot_.B; ++b) sample(first + b, out.row(b));
  if (++micro_ == slot_.accum) {
    micro_ = 0;
    ++step_;
  }
}

void SyntheticSource::restore(const std::vector<int64_t>& state) {
  GPT_CHECK(state.size() == 2 && uint64_t(state[0]) == seed_,
            "synthetic data state does not match this run's seed (resumed with another train.seed?)");
  GPT_CHECK(state[1] % global_batch() == 0,
            "synthetic data state: sample " + std::to_string(state[1]) + " is not a step boundary for a global batch of " +
                std::to_string(global_batch()) + " sequences (resumed with another global batch size?)");
  step_ = state[1] / global_batch();
  micro_ = 0;
}

std::string SyntheticSource::describe() const {
  return "synthetic arithmetic sequences over " + std::to_string(alphabet_) + " token ids";
}

}  // namespace gpt
