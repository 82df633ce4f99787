#include "parallel/pipeline/stage_split.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace gpt::parallel::pipeline {
namespace {

// Costs are whole blocks plus fractional extras: compare with a tolerance so that
// (n + e) - e == n and equal splits tie.
constexpr double kEps = 1e-9;

std::vector<LayerRange> ranges_of(const std::vector<int>& counts) {
  std::vector<LayerRange> out;
  int begin = 0;
  for (int n : counts) {
    out.push_back({begin, begin + n});
    begin += n;
  }
  return out;
}

void check_explicit(int n_layer, int chunks, const std::vector<int>& counts) {
  const std::string key = "config key 'parallel.layers_per_stage'";
  GPT_CHECK(int(counts.size()) == chunks, key + " has " + std::to_string(counts.size()) +
                                              " entries, expected one per chunk: parallel.pp x "
                                              "parallel.virtual_stages = " + std::to_string(chunks));
  int sum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    GPT_CHECK(counts[i] >= 1, key + ": entry " + std::to_string(i) + " is " + std::to_string(counts[i]) +
                                  "; every chunk needs at least one layer");
    sum += counts[i];
  }
  GPT_CHECK(sum == n_layer, key + " sums to " + std::to_string(sum) + " layers, model.n_layer is " +
                                std::to_string(n_layer));
}

// The balanced split (see split_layers in the header). extra[k] is chunk k's cost beyond
// its blocks.
std::vector<int> balanced_counts(int n_layer, const std::vector<double>& extra) {
  const int chunks = int(extra.size());
  // Most blocks chunk k can take while costing at most `limit`, up to n_layer.
  auto capacity = [&](int k, double limit) {
    return int(std::min<double>(n_layer, std::floor(limit - extra[size_t(k)] + kEps)));
  };
  auto feasible = [&](double limit) {
    int64_t total = 0;
    for (int k = 0; k < chunks; ++k) {
      const int cap = capacity(k, limit);
      if (cap < 1) return false;
      total += cap;
    }
    return total >= n_layer;
  };
  // The optimal maximum is the cost of some chunk: a block count plus that chunk's extra.
  // The largest candidate, n_layer plus the largest extra, is always feasible.
  std::vector<double> candidates;
  for (int n = 1; n <= n_layer; ++n)
    for (int k = 0; k < chunks; ++k) candidates.push_back(n + extra[size_t(k)]);
  std::sort(candidates.begin(), candidates.end());
  const double limit = *std::find_if(candidates.begin(), candidates.end(), feasible);

  // best[k][r]: least sum of squared costs of chunks k.. holding exactly r blocks, each
  // chunk within the limit; infinity when impossible.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(size_t(chunks) + 1, std::vector<double>(size_t(n_layer) + 1, inf));
  best[size_t(chunks)][0] = 0;
  auto square = [&](int k, int n) { return (n + extra[size_t(k)]) * (n + extra[size_t(k)]); };
  for (int k = chunks - 1; k >= 0; --k)
    for (int r = 0; r <= n_layer; ++r)
      for (int n = 1; n <= std::min(r, capacity(k, limit)); ++n)
        best[size_t(k)][size_t(r)] =
            std::min(best[size_t(k)][size_t(r)], square(k, n) + best[size_t(k) + 1][size_t(r - n)]);

  // Walk forward giving each chunk the fewest blocks that still reach the optimum.
  std::vector<int> counts;
  int left = n_layer;
  for (int k = 0; k < chunks; ++k) {
    const double target = best[size_t(k)][size_t(left)];
    for (int n = 1; n <= std::min(left, capacity(k, limit)); ++n) {
      if (square(k, n) + best[size_t(k) + 1][size_t(left - n)] <= target + kEps * (1 + target)) {
        counts.push_back(n);
        left -= n;
        break;
      }
    }
  }
  return counts;
}

}  // namespace

std::vector<LayerRange> split_layers(int n_layer, int chunks, const std::vector<int>& layers_per_chunk,
                                     double embedding_cost, double head_cost) {
  GPT_CHECK(chunks >= 1, "config keys 'parallel.pp' x 'parallel.virtual_stages' give " + std::to_string(chunks) +
                             " pipeline chunks; need at least 1");
  GPT_CHECK(n_layer >= 1, "config key 'model.n_layer' = " + std::to_string(n_layer) + " must be at least 1");
  GPT_CHECK(n_layer >= chunks, "config keys 'parallel.pp' x 'parallel.virtual_stages' give " +
                                   std::to_string(chunks) + " pipeline chunks but model.n_layer is only " +
                                   std::to_string(n_layer) + "; every chunk needs at least one layer");
  GPT_CHECK(embedding_cost >= 0 && head_cost >= 0, "split_layers: embedding and head costs must be >= 0");
  if (!layers_per_chunk.empty()) {
    check_explicit(n_layer, chunks, layers_per_chunk);
    return ranges_of(layers_per_chunk);
  }
  std::vector<double> extra(size_t(chunks), 0.0);
  extra.front() += embedding_cost;
  extra.back() += head_cost;
  return ranges_of(balanced_counts(n_layer, extra));
}

double head_cost_in_layers(int64_t vocab, int64_t n_embd, int64_t seq_len) {
  GPT_CHECK(vocab >= 1, "config key 'model.vocab_size' = " + std::to_string(vocab) + " must be at least 1");
  GPT_CHECK(n_embd >= 1, "config key 'model.n_embd' = " + std::to_string(n_embd) + " must be at least 1");
  GPT_CHECK(seq_len >= 0, "config key 'train.seq_len' = " + std::to_string(seq_len) + " must not be negative");
  return double(vocab) / (12.0 * double(n_embd) + double(seq_len));
}

}  // namespace gpt::parallel::pipeline
