// The seam between data/ and the trainer: a stream of micro-batches for one
// data-parallel rank. data/ depends on neither core/ nor parallel/, so this header is
// plain C++.
//
// Global-order contract (what makes elastic resume possible): the run consumes one
// global sequence of samples 0, 1, 2, ...; global step s uses samples
// [s*G, (s+1)*G) with G = dp_size * accum * B. Rank r's micro-batch m of step s holds
// samples s*G + (r*accum + m)*B + [0, B). Whatever the DP size, the union of the
// ranks' samples at a step is the same set.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpt::data {

struct Batch {
  int B = 0;  // sequences
  int T = 0;  // tokens per sequence fed to the model; each row holds T+1 tokens
  std::vector<int32_t> tokens;  // [B, T+1]: inputs are [:, :T], targets are [:, 1:]
  std::vector<int32_t> source;  // [B]: index of the mixture source each row came from
  // [B, T+1]: document index within the row. Rows are windows of concatenated
  // documents, each ending in EOS, so one row may span several documents; the segment
  // starts at 0 and increases by one after every EOS (the EOS belongs to the document it
  // ends). A trainer can mask attention or reset positions where it changes.
  std::vector<int32_t> segment;
  int32_t* row(int b) { return tokens.data() + size_t(b) * (T + 1); }
};

// Where a rank sits in the global order (see the contract above).
struct RankSlot {
  int dp_rank = 0;
  int dp_size = 1;
  int accum = 1;  // micro-batches per step per rank
  int B = 1;      // sequences per micro-batch
  int T = 1;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The next micro-batch for this rank, in order: micro 0..accum-1 of step s, then s+1.
  virtual void next(Batch& out) = 0;
  // The complete position as a few integers (stored in checkpoints). It describes a
  // step boundary in the global order, so it restores under any RankSlot.
  virtual std::vector<int64_t> state() const = 0;
  virtual void restore(const std::vector<int64_t>& state) = 0;
  virtual int vocab_size() const = 0;
  virtual std::string describe() const = 0;  // one line for the start-up log
  // The names of the sources Batch::source indexes (a mixture's [source.NAME] sections,
  // in order); empty when the batches carry no provenance.
  virtual std::vector<std::string> source_names() const { return {}; }
};

}  // namespace gpt::data
