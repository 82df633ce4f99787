// The mixture config file: which sources a run samples from, where their shards are,
// and with what weights.
//
// Format (INI; '#' or ';' starts a comment; keys are `key = value`):
//
//   [mixture]
//   root = ../..                  # optional: base for relative globs, itself relative to
//                                 # the directory holding this file (default: that directory)
//   shuffle_shards = 4            # optional: shards open and interleaved at once per source
//
//   [source.gcide]                # one section per source; the name is after "source."
//   glob = corpus/gcide/train_*.h5        # training shards (glob(3) pattern)
//   valid_glob = corpus/gcide/valid_*.h5  # held-out shards, for validation sources
//   weight = 0.3                          # > 0
//
// Weights that do not sum to 1 are normalised, with a warning on stderr (so "60, 22,
// 8, 8, 3" works as written in the GPT-3 paper); a missing, non-numeric, zero,
// negative or non-finite weight is an error. Every error is a std::runtime_error that
// names the file, and the line or key.
#pragma once
#include <string>
#include <vector>

namespace gpt::data {

struct MixtureSourceSpec {
  std::string name;
  std::string glob;        // absolute after loading (root applied)
  std::string valid_glob;  // absolute, may be empty
  double weight = 0;       // as written (not normalised)
};

struct MixtureConfig {
  std::string path;
  int shuffle_shards = 4;
  std::vector<MixtureSourceSpec> sources;
};

MixtureConfig mixture_config_load(const std::string& path);

// Sorted matches of a glob(3) pattern (empty when nothing matches).
std::vector<std::string> glob_paths(const std::string& pattern);

}  // namespace gpt::data
