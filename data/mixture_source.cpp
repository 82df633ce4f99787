#include "data/mixture_source.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "data/mixture_config.h"
#include "data/mixture_schedule.h"
#include "data/shard.h"
#include "data/source_walk.h"

namespace gpt::data {
namespace {

// A step boundary in the global order: the next sample index and how many samples each
// source has given so far (sum(counts) == sample).
struct Position {
  int64_t sample = 0;
  std::vector<int64_t> counts;
};

struct Source {
  std::string name;
  std::vector<ShardInfo> shards;
  std::unique_ptr<SourceWalk> walk;
  // Open readers, least recently used first; at most one walk group's worth.
  std::vector<std::pair<int, std::unique_ptr<ShardReader>>> open;
};

struct Item {
  Batch batch;
  Position before, after;  // the step's boundaries
  int micro = 0;
  std::exception_ptr error;
};

class MixtureSource final : public BatchSource {
 public:
  MixtureSource(std::vector<Source> sources, const std::vector<double>& weights, RankSlot slot,
                const MixtureOptions& options, int vocab, std::string tokenizer)
      : sources_(std::move(sources)), schedule_(weights), slot_(slot), options_(options),
        vocab_(vocab), tokenizer_(std::move(tokenizer)) {
    consumed_.counts.assign(sources_.size(), 0);
    produce_from_ = consumed_;
  }
  ~MixtureSource() override { stop(); }

  void next(Batch& out) override {
    if (!thread_.joinable() && !error_) start();
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || error_; });
      if (queue_.empty() || queue_.front().error) {
        if (!queue_.empty()) error_ = queue_.front().error;
        std::rethrow_exception(error_);
      }
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    cv_.notify_all();
    std::swap(out, item.batch);
    consumed_ = item.micro == slot_.accum - 1 ? std::move(item.after) : std::move(item.before);
  }

  std::vector<int64_t> state() const override {
    std::vector<int64_t> s = {kMixtureStateTag, int64_t(options_.seed), consumed_.sample,
                              int64_t(consumed_.counts.size())};
    s.insert(s.end(), consumed_.counts.begin(), consumed_.counts.end());
    return s;
  }

  void restore(const std::vector<int64_t>& s) override {
    const size_t S = sources_.size();
    if (s.size() != 4 + S || s[0] != kMixtureStateTag || s[3] != int64_t(S))
      throw std::runtime_error("sampler state: not a state of this mixture (expected " +
                               std::to_string(S) + " sources, layout tag MIX1)");
    if (uint64_t(s[1]) != options_.seed)
      throw std::runtime_error("sampler state: saved with seed " + std::to_string(uint64_t(s[1])) +
                               " but this sampler uses seed " + std::to_string(options_.seed));
    Position p;
    p.sample = s[2];
    p.counts.assign(s.begin() + 4, s.end());
    int64_t sum = 0;
    for (int64_t c : p.counts) sum += c;
    if (sum != p.sample || p.sample < 0)
      throw std::runtime_error("sampler state: per-source counts do not add up to the sample index");
    stop();
    consumed_ = p;
    produce_from_ = std::move(p);
  }

  int vocab_size() const override { return vocab_; }

  std::vector<std::string> source_names() const override {
    std::vector<std::string> names;
    for (const Source& s : sources_) names.push_back(s.name);
    return names;
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "mixture sampler: seed " << options_.seed << ", T " << slot_.T << ", dp rank "
       << slot_.dp_rank << "/" << slot_.dp_size << ", tokenizer '" << tokenizer_ << "' vocab "
       << vocab_ << ";";
    for (size_t s = 0; s < sources_.size(); ++s) {
      int64_t tokens = 0;
      for (auto& sh : sources_[s].shards) tokens += sh.token_count;
      char w[32];
      std::snprintf(w, sizeof w, "%.4f", schedule_.weight(int(s)));
      os << " " << sources_[s].name << " (w " << w << ", " << sources_[s].shards.size()
         << " shards, " << tokens << " tokens)";
    }
    return os.str();
  }

 private:
  void start() {
    stopping_ = false;
    thread_ = std::thread([this] { produce(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    queue_.clear();
    error_ = nullptr;
  }

  // Background thread: walk the global order step by step from produce_from_, keep this
  // rank's slot of each step, read it, and queue it micro-batch by micro-batch.
  void produce() {
    // HDF5's automatic error printing is per thread in a thread-safe build: silence it
    // here too, so a bad shard surfaces only as our one exception message.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    try {
      Position pos = produce_from_;
      const int64_t per_rank = int64_t(slot_.accum) * slot_.B;
      const int64_t G = per_rank * slot_.dp_size;
      const int64_t lo = per_rank * slot_.dp_rank, hi = lo + per_rank;
      std::vector<std::pair<int, int64_t>> picks;  // (source, k) of this rank's samples
      for (;;) {
        Position before = pos;
        picks.clear();
        // Every rank walks the whole step: the counts at the next step depend on all of it.
        for (int64_t j = 0; j < G; ++j) {
          int s = schedule_.next(pos.counts);
          if (j >= lo && j < hi) picks.emplace_back(s, pos.counts[size_t(s)] - 1);
        }
        pos.sample += G;
        for (int m = 0; m < slot_.accum; ++m) {
          Item item;
          fill(item.batch, picks.data() + size_t(m) * size_t(slot_.B));
          item.before = before;
          item.after = pos;
          item.micro = m;
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] { return stopping_ || int(queue_.size()) < options_.prefetch_batches; });
          if (stopping_) return;
          queue_.push_back(std::move(item));
          lock.unlock();
          cv_.notify_all();
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      Item item;
      item.error = std::current_exception();
      queue_.push_back(std::move(item));
      cv_.notify_all();
    }
  }

  ShardReader& reader(Source& src, int shard) {
    for (size_t i = 0; i < src.open.size(); ++i) {
      if (src.open[i].first != shard) continue;
      if (i + 1 != src.open.size()) std::rotate(src.open.begin() + long(i), src.open.begin() + long(i) + 1, src.open.end());
      return *src.open.back().second;
    }
    if (int(src.open.size()) >= std::max(1, options_.shuffle_shards)) src.open.erase(src.open.begin());
    const ShardInfo& info = src.shards[size_t(shard)];
    src.open.emplace_back(shard, std::make_unique<ShardReader>(info.path, tokenizer_, vocab_));
    return *src.open.back().second;
  }

  void fill(Batch& b, const std::pair<int, int64_t>* picks) {
    const int B = slot_.B, T = slot_.T;
    const size_t row_len = size_t(T) + 1;
    b.B = B;
    b.T = T;
    b.tokens.resize(size_t(B) * row_len);
    b.segment.resize(size_t(B) * row_len);
    b.source.resize(size_t(B));
    for (int r = 0; r < B; ++r) {
      Source& src = sources_[size_t(picks[r].first)];
      SamplePlace place = src.walk->locate(picks[r].second);
      ShardReader& rd = reader(src, place.shard);
      int32_t* row = b.row(r);
      rd.read(place.offset, int64_t(row_len), row);
      const int32_t eot = int32_t(rd.info().meta.eot_token);
      int32_t* seg = b.segment.data() + size_t(r) * row_len;
      int32_t doc = 0;
      for (size_t t = 0; t < row_len; ++t) {
        seg[t] = doc;
        doc += row[t] == eot;
      }
      b.source[size_t(r)] = picks[r].first;
    }
  }

  std::vector<Source> sources_;
  MixtureSchedule schedule_;
  RankSlot slot_;
  MixtureOptions options_;
  int vocab_;
  std::string tokenizer_;

  Position consumed_;      // consumer side: what state() reports
  Position produce_from_;  // where the producer starts (set while it is stopped)
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::exception_ptr error_;
};

std::string where(const MixtureOptions& o) {
  return o.config_path.empty() ? "mixture" : "mixture config " + o.config_path;
}

}  // namespace

std::unique_ptr<BatchSource> make_mixture_source(const std::vector<MixtureSourceInput>& inputs,
                                                 RankSlot slot, const MixtureOptions& options) {
  if (inputs.empty()) throw std::runtime_error(where(options) + ": no sources");
  if (slot.dp_size < 1 || slot.dp_rank < 0 || slot.dp_rank >= slot.dp_size || slot.accum < 1 ||
      slot.B < 1 || slot.T < 1)
    throw std::runtime_error(where(options) + ": invalid RankSlot");
  std::vector<double> weights;
  for (auto& in : inputs) weights.push_back(in.weight);
  MixtureSchedule check(weights);  // throws on bad weights before any file is read
  (void)check;

  int vocab = options.expected_vocab;
  std::string tokenizer = options.expected_tokenizer;
  std::vector<Source> sources;
  for (size_t s = 0; s < inputs.size(); ++s) {
    const auto& in = inputs[s];
    if (in.shard_paths.empty())
      throw std::runtime_error(where(options) + ": source '" + in.name + "' has no shards");
    Source src;
    src.name = in.name;
    std::vector<int64_t> tokens;
    for (const auto& path : in.shard_paths) {
      // Only headers here: start-up cost is one open per shard, whatever its size.
      ShardInfo info = shard_read_info(path, tokenizer, vocab);
      if (tokenizer.empty()) tokenizer = info.meta.tokenizer;  // the first shard sets it
      if (vocab == 0) vocab = int(info.meta.vocab_size);
      tokens.push_back(info.token_count);
      src.shards.push_back(std::move(info));
    }
    src.walk = std::make_unique<SourceWalk>(tokens, slot.T, options.seed, int(s), options.shuffle_shards);
    if (src.walk->windows_per_epoch() == 0)
      throw std::runtime_error(where(options) + ": source '" + in.name + "' is empty: none of its " +
                               std::to_string(in.shard_paths.size()) + " shards (first: " +
                               in.shard_paths.front() + ") holds a sequence of T+1 = " +
                               std::to_string(slot.T + 1) + " tokens");
    sources.push_back(std::move(src));
  }
  return std::make_unique<MixtureSource>(std::move(sources), weights, slot, options, vocab, tokenizer);
}

std::unique_ptr<BatchSource> make_mixture_source(const std::string& mixture_config_path,
                                                 RankSlot slot, uint64_t seed, bool validation,
                                                 int expected_vocab,
                                                 std::string expected_tokenizer_identity) {
  MixtureConfig cfg = mixture_config_load(mixture_config_path);
  std::vector<MixtureSourceInput> inputs;
  double sum = 0;
  for (auto& spec : cfg.sources) {
    const std::string& pattern = validation ? spec.valid_glob : spec.glob;
    const char* key = validation ? "valid_glob" : "glob";
    if (pattern.empty())
      throw std::runtime_error("mixture config " + cfg.path + ": [source." + spec.name + "] has no " +
                               key + " (needed for the validation sampler)");
    auto paths = glob_paths(pattern);
    if (paths.empty())
      throw std::runtime_error("mixture config " + cfg.path + ": [source." + spec.name + "] " + key +
                               " '" + pattern + "' matches no file (run prepare first?)");
    inputs.push_back({spec.name, std::move(paths), spec.weight});
    sum += spec.weight;
  }
  if (std::fabs(sum - 1.0) > 1e-6)
    std::fprintf(stderr, "warning: mixture config %s: weights sum to %g, normalising them to 1\n",
                 cfg.path.c_str(), sum);
  MixtureOptions options;
  options.seed = seed;
  options.expected_vocab = expected_vocab;
  options.expected_tokenizer = std::move(expected_tokenizer_identity);
  options.shuffle_shards = cfg.shuffle_shards;
  options.config_path = cfg.path;
  return make_mixture_source(inputs, slot, options);
}

}  // namespace gpt::data
