// Loss spikes (train.on_spike): what counts as one and what the trainer does about it.
//
// A step's loss is a spike when it is not finite, or, with train.spike_zscore = z > 0,
// when it lies more than z standard deviations above the mean of the last
// train.spike_window accepted losses (once at least 8 are known: a falling loss early
// in a run has a wide spread and is never "above"). Policies:
//   stop      end the run before the update, naming the step (Megatron's NaN check);
//   skip      drop the step's update: parameters and optimizer state stay as they were,
//             the data and the learning-rate schedule move on (llm.c's outlier skip);
//   rollback  reload the last complete checkpoint and go on from there with the data
//             after the spike, so the window of batches that led to it is never seen
//             again (what large runs do by hand).
// A gradient norm that is not finite is handled the same way, with the loss finite.
#pragma once
#include <deque>
#include <string>

namespace gpt {

enum class SpikePolicy { stop, skip, rollback };
// "stop" | "skip" | "rollback"; anything else is an error naming 'train.on_spike'.
SpikePolicy parse_spike_policy(const std::string& name);
const char* spike_policy_name(SpikePolicy p);

class SpikeDetector {
 public:
  SpikeDetector(double zscore, int window);
  // Whether `loss` is a spike against the accepted losses; *z gets its z-score (0 when
  // not computed, infinite for a non-finite loss).
  bool is_spike(double loss, double* z) const;
  void accept(double loss);  // the step's update went in

 private:
  double zscore_;
  size_t window_;
  std::deque<double> history_;
};

}  // namespace gpt
