// Where the trainer's tokens come from and how sampled ids become text: the mixture
// sampler over HDF5 shards when data.mixture is set, the synthetic stream otherwise.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/tokenizer.h"
#include "launch/config.h"

namespace gpt {

std::unique_ptr<data::BatchSource> make_batch_source(const TrainConfig& cfg, data::RankSlot slot,
                                                     bool validation);

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(int32_t id) const = 0;
  // Ids this codec can write as text; 0: any (a model may have more rows than the
  // tokenizer has tokens, padded for alignment; those ids must never be drawn).
  virtual int vocab_size() const = 0;
};
std::unique_ptr<TextCodec> make_text_codec(const TrainConfig& cfg);

// GPT-2's tokenizer from data.tokenizer_dir; errors name the key and the folder.
data::Tokenizer load_tokenizer(const TrainConfig& cfg);

}  // namespace gpt
