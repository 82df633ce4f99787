// A deterministic synthetic token stream for debug runs and tests when no corpus is
// configured. Sample g is an arithmetic progression (start, stride drawn from g) over a
// small alphabet, so a model can learn it and the loss visibly falls. It keeps the
// global-order contract of data/batch.h, so it works under any data-parallel layout.
#pragma once
#include <cstdint>

#include "data/batch.h"

namespace gpt {

class SyntheticSource : public data::BatchSource {
 public:
  SyntheticSource(int vocab_size, data::RankSlot slot, uint64_t seed, bool validation);
  void next(data::Batch& out) override;
  // {seed, first global sample of the current step}: a position in the global order,
  // so it restores under any RankSlot (data/batch.h).
  std::vector<int64_t> state() const override { return {int64_t(seed_), step_ * global_batch()}; }
  void restore(const std::vector<int64_t>& state) override;
  int vocab_size() const override { return vocab_; }
  std::string describe() const override;

  // The T+1 tokens of global sample g (exposed for tests).
  void sample(int64_t g, int32_t* row) const;

 private:
  int64_t global_batch() const { return int64_t(slot_.dp_size) * slot_.accum * slot_.B; }

 public:

 private:
  int vocab_;
  int alphabet_;
  data::RankSlot slot_;
  uint64_t seed_;
  int64_t step_ = 0;  // global step of the next micro-batch
  int micro_ = 0;     // next micro-batch within the step
};

}  // namespace gpt
