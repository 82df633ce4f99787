// Which transformer blocks each pipeline chunk runs: either the user's list
// ('parallel.layers_per_stage') or a balanced split that accounts for the embedding on
// chunk 0 and the LM head on the last chunk. Chunk c runs on pipeline rank c % p (see
// schedule.h), so with v virtual stages there are p * v chunks.
#pragma once
#include <cstdint>
#include <vector>

namespace gpt::parallel::pipeline {

// Blocks [begin, end) of the model.
struct LayerRange {
  int begin = 0;
  int end = 0;
  int count() const { return end - begin; }
  bool operator==(const LayerRange& o) const { return begin == o.begin && end == o.end; }
};

// The contiguous block range of each of `chunks` chunks, in chunk order, covering
// 0..n_layer. With `layers_per_chunk` non-empty it must hold exactly `chunks` counts, each
// at least 1, summing to n_layer (else gpt::Error naming 'parallel.layers_per_stage').
// Empty: the balanced split. A block costs 1, chunk 0 also embedding_cost and the last
// chunk head_cost (both in blocks, >= 0; one chunk pays both). The split minimises the
// most costly chunk; among those, the sum of squared chunk costs (the most even); among
// those, the one whose earlier chunks hold fewer blocks. That last rule is for memory:
// under 1F1B stage r keeps p - r micro-batches' activations, so an extra block costs least
// on a late stage. n_layer < chunks throws, naming 'parallel.pp' and 'parallel.virtual_stages'.
std::vector<LayerRange> split_layers(int n_layer, int chunks, const std::vector<int>& layers_per_chunk,
                                     double embedding_cost = 0, double head_cost = 0);

// The LM head's compute in blocks, for split_layers' head_cost: per token a block does
// 12 C^2 multiply-adds in its matmuls (QKV 3 C^2, projection C^2, MLP 8 C^2) and about
// T C in causal attention (scores and weighted sum, T C / 2 each on average); the head
// does V C. So V / (12 C + T). seq_len = 0 leaves attention out (short contexts). Forward
// and backward scale alike, so the ratio holds for a whole step. The embedding is a
// lookup and costs about nothing.
double head_cost_in_layers(int64_t vocab, int64_t n_embd, int64_t seq_len = 0);

}  // namespace gpt::parallel::pipeline
