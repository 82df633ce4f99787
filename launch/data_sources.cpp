#include "launch/data_sources.h"

#include <filesystem>

#include "core/error.h"
#include "data/mixture_source.h"
#include "data/tokenizer.h"
#include "launch/synthetic_source.h"

namespace gpt {

std::unique_ptr<data::BatchSource> make_batch_source(const TrainConfig& cfg, data::RankSlot slot,
                                                     bool validation) {
  if (cfg.data_mixture.empty())
    return std::make_unique<SyntheticSource>(cfg.model.vocab_size, slot, cfg.seed, validation);
  // Shards must have been made with the tokenizer the run decodes with: the sampler
  // checks every shard's tokenizer identity and vocabulary against these.
  data::Tokenizer tok = load_tokenizer(cfg);
  try {
    return data::make_mixture_source(cfg.data_mixture, slot, cfg.seed, validation,
                                     tok.vocab_size(), tok.identity());
  } catch (const std::runtime_error& e) {
    fail(std::string("config key 'data.mixture': ") + e.what());
  }
}

namespace {

// Synthetic tokens have no text: show ids.
class IdCodec : public TextCodec {
 public:
  std::vector<int32_t> encode(const std::string&) const override { return {0}; }
  std::string decode(int32_t id) const override { return std::to_string(id) + " "; }
  int vocab_size() const override { return 0; }
};

// GPT-2 BPE. Tokens are decoded one at a time as they stream; a character split
// across two tokens is written byte by byte and the terminal joins it.
class BpeCodec : public TextCodec {
 public:
  explicit BpeCodec(data::Tokenizer tok) : tok_(std::move(tok)) {}
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    tok_.encode(text, ids);
    return ids;
  }
  std::string decode(int32_t id) const override { return tok_.token_bytes(id); }
  int vocab_size() const override { return tok_.vocab_size(); }

 private:
  data::Tokenizer tok_;
};

}  // namespace

data::Tokenizer load_tokenizer(const TrainConfig& cfg) {
  namespace fs = std::filesystem;
  fs::path dir(cfg.tokenizer_dir);
  fs::path enc = dir / "encoder.json", bpe = dir / "vocab.bpe";
  if (!fs::exists(enc) || !fs::exists(bpe))
    fail("config key 'data.tokenizer_dir': " + dir.string() +
         " has no encoder.json + vocab.bpe (run scripts/fetch_assets.sh)");
  try {
    return data::Tokenizer::load_gpt2(enc.string(), bpe.string());
  } catch (const std::runtime_error& e) {
    fail(e.what());
  }
}

std::unique_ptr<TextCodec> make_text_codec(const TrainConfig& cfg) {
  if (cfg.data_mixture.empty()) return std::make_unique<IdCodec>();
  return std::make_unique<BpeCodec>(load_tokenizer(cfg));
}

}  // namespace gpt
