// Sampling from a model whose vocabulary is padded past the tokenizer's: the padded ids
// (which no text has) are never drawn, while an unrestricted draw does reach them; for
// both model families (the sampler sees only the model interface).
#include <gtest/gtest.h>

#include <algorithm>

#include "core/model/make_model.h"
#include "launch/generate.h"

namespace gpt {
namespace {

TEST(Generate, NeverDrawsIdsPastTheTokenizersVocabulary) {
  for (ModelFamily family : {ModelFamily::GPT2, ModelFamily::Llama}) {
    SCOPED_TRACE(family_name(family));
    GPTConfig cfg;
    cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 16, cfg.vocab_size = 64, cfg.block_size = 8;
    cfg.family = family;
    cfg.tie_embeddings = family == ModelFamily::GPT2;
    ParamStore store;
    std::unique_ptr<Model> model = make_model(cfg, store);
    store.materialize(Device::CPU);
    store.init(4);
    auto draw = [&](int vocab) {
      SampleConfig sc{300, 2.0f, 0, 0, vocab};
      Rng rng(6);
      std::vector<int32_t> out = generate(*model, {1}, sc, rng, nullptr);
      return *std::max_element(out.begin() + 1, out.end());
    };
    EXPECT_LT(draw(40), 40);
    EXPECT_GE(draw(0), 40);  // near-uniform logits over 64 ids: the padded rows do come up
  }
}

}  // namespace
}  // namespace gpt
