#include "launch/data_sources.h"

#include "launch/synthetic_source.h"

namespace gpt {

std::unique_ptr<data::BatchSource> make_batch_source(const TrainConfig& cfg, data::RankSlot slot,
                                                     bool validation) {
  return std::make_unique<SyntheticSource>(cfg.model.vocab_size, slot, cfg.seed, validation);
}

namespace {
// Synthetic tokens have no text: show ids.
class IdCodec : public TextCodec {
 public:
  std::vector<int32_t> encode(const std::string&) const override { return {0}; }
  std::string decode(int32_t id) const override { return std::to_string(id) + " "; }
};
}  // namespace

std::unique_ptr<TextCodec> make_text_codec(const TrainConfig& cfg) { return std::make_unique<IdCodec>(); }

}  // namespace gpt
