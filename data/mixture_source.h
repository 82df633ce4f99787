// The streaming mixture sampler: a BatchSource over weighted sources of token shards.
//
// Order: global sample n comes from the source chosen by MixtureSchedule (greedy
// blending on the sample index); if it is that source's k-th sample, its tokens are
// SourceWalk::locate(k) of that source. Both are pure functions of (seed, n, counts),
// so every rank computes the same global sequence and takes its slot of it (batch.h).
// Sources smaller than their share simply repeat, with a fresh shuffle every epoch.
//
// State (state()/restore()): {kMixtureStateTag, seed, global sample index, number of
// sources, count per source}. It names a step boundary: called after the last
// micro-batch of a step it points at the next step; called mid-step it points at the
// start of the current step (the partial step is replayed on resume).
//
// Reading: a background thread computes the rank's samples, reads each T+1-token
// window with one hyperslab read and queues whole micro-batches, at most
// `prefetch_batches` ahead. Memory is bounded by the configuration, whatever the corpus
// size: the queue (prefetch_batches * B * (T+1) * 8 bytes, tokens + segments) plus at
// most sources * shuffle_shards open shards, each with capped HDF5 caches (about 4 MB
// measured for a 64 M-token shard; see shard.cpp). Start-up reads only shard headers (one open per shard).
//
// HDF5 calls are serialised process-wide (shard.h), so several samplers in one process
// share one reader's throughput; ranks are normally separate processes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"

namespace gpt::data {

inline constexpr int64_t kMixtureStateTag = 0x4d495831;  // "MIX1": the state layout

struct MixtureSourceInput {
  std::string name;
  std::vector<std::string> shard_paths;
  double weight = 0;
};

struct MixtureOptions {
  uint64_t seed = 0;
  int expected_vocab = 0;              // 0: take it from the shards (all must agree)
  std::string expected_tokenizer;      // empty: take it from the shards (all must agree)
  int shuffle_shards = 4;              // see SourceWalk
  int prefetch_batches = 4;            // micro-batches queued ahead
  std::string config_path;             // for error messages, may be empty
};

// Sources given directly (tests, benchmarks). Throws std::runtime_error naming the
// file on a bad shard, an empty source or bad weights.
std::unique_ptr<BatchSource> make_mixture_source(const std::vector<MixtureSourceInput>& sources,
                                                 RankSlot slot, const MixtureOptions& options);

// Sources from a mixture config file (see mixture_config.h); `validation` reads each
// source's valid_glob instead of its glob.
std::unique_ptr<BatchSource> make_mixture_source(const std::string& mixture_config_path,
                                                 RankSlot slot, uint64_t seed, bool validation,
                                                 int expected_vocab,
                                                 std::string expected_tokenizer_identity);

}  // namespace gpt::data
