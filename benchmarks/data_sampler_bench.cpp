// Data benchmark: mixture sampler throughput (tokens/s per rank) and peak RSS over a
// synthetic corpus of >= 1 GB of shards, and start-up time over 1,000 shards.
//
//   data_sampler_bench [--gb 1.0] [--dir DIR] [--dp 1] [--T 1024] [--B 8]
//                      [--prefetch 4] [--shuffle-shards 4] [--epochs 1] [--json data_sampler.json]
//   data_sampler_bench --config launch/configs/default_mixture.ini [--T 1024] [--B 8]
//
// With --config it measures a real mixture instead (the default corpus from
// scripts/build_default_corpus.sh): start-up time, tokens/s and realised proportions.
//
// The corpus is generated once into DIR (default $TMPDIR/gpt_data_bench) and reused,
// so the timed pass reads from the page cache. Ranks (--dp) run as threads, each with
// its own sampler, as separate processes would. Prints a final line starting with
// "RESULT data_sampler" and writes the same numbers as JSON.
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "data/mixture_source.h"
#include "data/shard.h"

namespace {

using gpt::data::Batch;
using gpt::data::MixtureSourceInput;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

long status_kb(const char* key) {  // VmHWM / VmRSS from /proc/self/status, in KiB
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key) + 1);
  return -1;
}

double cpu_seconds() {  // user + system time of the whole process
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

gpt::data::ShardMeta bench_meta(const std::string& source) {
  gpt::data::ShardMeta m;
  m.tokenizer = "bench-synthetic";
  m.vocab_size = 50257;
  m.eot_token = 50256;
  m.source = source;
  return m;
}

// Writes `count` shards of `tokens` each as DIR/PREFIX_i.h5 unless already there.
std::vector<std::string> make_shards(const std::string& dir, const std::string& prefix, int count,
                                     int64_t tokens) {
  mkdir(dir.c_str(), 0755);
  std::vector<std::string> paths;
  std::vector<int32_t> doc;
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < count; ++i) {
    std::string path = dir + "/" + prefix + "_" + std::to_string(i) + ".h5";
    paths.push_back(path);
    if (exists(path)) continue;
    gpt::data::ShardWriter w(path, bench_meta(prefix));
    while (w.token_count() < tokens) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      doc.resize(size_t(200 + x % 4000));  // documents of 200..4200 tokens
      for (auto& t : doc) x ^= x << 13, x ^= x >> 7, x ^= x << 17, t = int32_t(x % 50256);
      w.add_document(doc.data(), std::min<size_t>(doc.size(), size_t(tokens - w.token_count())));
    }
    w.close();
  }
  return paths;
}

// --config mode: start-up and throughput of the factory the trainer uses.
int bench_config(const std::string& config, int T, int B, const std::string& json) {
  auto t0 = Clock::now();
  auto s = gpt::data::make_mixture_source(config, {0, 1, 1, B, T}, 1, false, 0, "");
  Batch b;
  s->next(b);
  const double startup_s = seconds_since(t0);
  auto v = gpt::data::make_mixture_source(config, {0, 1, 1, B, T}, 1, true, 0, "");
  std::printf("%s\nvalidation: %s\n", s->describe().c_str(), v->describe().c_str());
  std::vector<int64_t> counts(16, 0);
  const int steps = 2000;
  auto t1 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    s->next(b);
    for (int32_t src : b.source) ++counts[size_t(src) % 16];
  }
  const double tps = double(steps) * B * T / seconds_since(t1);
  std::printf("start-up (config, globs, headers, first batch): %.3f s\n", startup_s);
  std::printf("tokens/s: %.1f M; rows per source:", tps / 1e6);
  for (size_t i = 0; i < counts.size() && counts[i]; ++i) std::printf(" %lld", (long long)counts[i]);
  char line[256];
  std::snprintf(line, sizeof line,
                "{\"bench\": \"data_sampler_config\", \"T\": %d, \"B\": %d, "
                "\"tokens_per_s_per_rank\": %.0f, \"startup_s\": %.4f, \"peak_rss_mb\": %.1f}",
                T, B, tps, startup_s, status_kb("VmHWM:") / 1024.0);
  std::ofstream(json) << line << "\n";
  std::printf("\nRESULT data_sampler_config %s\n", line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  double gb = 1.0;
  int dp = 1, T = 1024, B = 8, prefetch = 4, shuffle_shards = 4;
  double epochs = 1.0;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/gpt_data_bench", json = "data_sampler.json";
  std::string config;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--gb") gb = std::atof(v.c_str());
    else if (k == "--dir") dir = v;
    else if (k == "--dp") dp = std::atoi(v.c_str());
    else if (k == "--T") T = std::atoi(v.c_str());
    else if (k == "--B") B = std::atoi(v.c_str());
    else if (k == "--prefetch") prefetch = std::atoi(v.c_str());
    else if (k == "--json") json = v;
    else if (k == "--config") config = v;
    else if (k == "--shuffle-shards") shuffle_shards = std::atoi(v.c_str());
    else if (k == "--epochs") epochs = std::atof(v.c_str());
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }

  if (!config.empty()) return bench_config(config, T, B, json);

  // Corpus: three sources (so the mixture path is exercised) of 64 M-token shards;
  // uint16 tokens, so 2 bytes per token on disk.
  const int64_t shard_tokens = 64LL << 20;
  const int64_t total_tokens = int64_t(gb * 1e9 / 2);
  const int shards = int((total_tokens + shard_tokens - 1) / shard_tokens);
  auto t_gen = Clock::now();
  std::vector<MixtureSourceInput> sources = {{"web", {}, 0.6}, {"books", {}, 0.3}, {"code", {}, 0.1}};
  std::vector<std::string> all = make_shards(dir, "bench", shards, shard_tokens);
  for (size_t i = 0; i < all.size(); ++i) sources[i % 3].shard_paths.push_back(all[i]);
  for (auto& s : sources)
    if (s.shard_paths.empty()) s.shard_paths.push_back(all[0]);
  std::printf("corpus: %d shards x %lld tokens in %s (%.1f s to make or find)\n", shards,
              (long long)shard_tokens, dir.c_str(), seconds_since(t_gen));

  // Start-up over 1,000 shards: header reads only, so it must not depend on their size.
  std::vector<std::string> small = make_shards(dir + "/startup", "small", 1000, 20000);
  gpt::data::MixtureOptions opt;
  opt.seed = 1;
  opt.prefetch_batches = prefetch;
  opt.shuffle_shards = shuffle_shards;
  opt.expected_tokenizer = "bench-synthetic";
  opt.expected_vocab = 50257;
  auto t_start = Clock::now();
  {
    auto s = gpt::data::make_mixture_source({{"small", small, 1.0}}, {0, 1, 1, B, T}, opt);
    Batch b;
    s->next(b);
  }
  const double startup_s = seconds_since(t_start);

  // Throughput: reset the peak-RSS mark (Linux: writing 5 to clear_refs), then read at
  // least the whole corpus once, split over `dp` ranks.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const long rss_before_kb = status_kb("VmRSS:");
  const int64_t tokens_per_step = int64_t(B) * T;
  const int64_t steps = int64_t(epochs * double(total_tokens / dp + tokens_per_step - 1)) / tokens_per_step;
  std::vector<double> rank_s(static_cast<size_t>(dp));
  auto t_read = Clock::now();
  const double cpu0 = cpu_seconds();
  std::vector<std::thread> ranks;
  for (int r = 0; r < dp; ++r) {
    ranks.emplace_back([&, r] {
      auto s = gpt::data::make_mixture_source(sources, {r, dp, 1, B, T}, opt);
      Batch b;
      auto t0 = Clock::now();
      int64_t check = 0;
      for (int64_t i = 0; i < steps; ++i) s->next(b), check += b.tokens[0];
      rank_s[size_t(r)] = seconds_since(t0);
      if (check < 0) std::printf("impossible\n");  // keeps the loop observable
    });
  }
  for (auto& t : ranks) t.join();
  const double wall_s = seconds_since(t_read);
  // CPU time (reader threads + consumers) per token: on a shared, loaded machine this
  // is steadier than wall time.
  const double cpu_s = cpu_seconds() - cpu0;
  double slowest = 0;
  for (double s : rank_s) slowest = std::max(slowest, s);
  const double tokens_per_rank = double(steps) * double(tokens_per_step);
  const double tps_per_rank = tokens_per_rank / slowest;
  const long peak_kb = status_kb("VmHWM:");
  const double buffer_mb = double(prefetch) * B * (T + 1) * 4 * 2 / 1e6;  // tokens + segment

  std::printf("read %.0f tokens per rank x %d ranks in %.2f s\n", tokens_per_rank, dp, wall_s);
  std::printf("tokens/s per rank: %.1f M (wall); %.1f M tokens per CPU-second\n", tps_per_rank / 1e6,
              tokens_per_rank * dp / cpu_s / 1e6);
  std::printf("peak RSS: %.1f MB (%.1f MB before the samplers; prefetch buffer %.2f MB per rank)\n",
              peak_kb / 1024.0, rss_before_kb / 1024.0, buffer_mb);
  std::printf("start-up, 1000 shards: %.3f s\n", startup_s);
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"bench\": \"data_sampler\", \"corpus_gb\": %.3f, \"shards\": %d, \"dp\": %d, "
                "\"T\": %d, \"B\": %d, \"tokens_per_s_per_rank\": %.0f, \"tokens_per_cpu_s\": %.0f, "
                "\"peak_rss_mb\": %.1f, "
                "\"rss_before_mb\": %.1f, \"prefetch_buffer_mb\": %.2f, \"startup_1000_shards_s\": %.4f}",
                double(shards) * double(shard_tokens) * 2 / 1e9, shards, dp, T, B, tps_per_rank,
                tokens_per_rank * dp / cpu_s,
                peak_kb / 1024.0, rss_before_kb / 1024.0, buffer_mb, startup_s);
  std::ofstream(json) << line << "\n";
  std::printf("RESULT data_sampler %s\n", line);
  return 0;
}
