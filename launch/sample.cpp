// sample: generates text from a checkpoint, streaming tokens as they are drawn.
//   sample CONFIG.ini [--sample.checkpoint PATH] [--sample.tokens N] [--sample.prompt TEXT] ...
// Without sample.checkpoint it uses the latest checkpoint in run.dir.
#include <cstdio>
#include <exception>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"
#include "core/model/make_model.h"
#include "launch/config.h"
#include "launch/data_sources.h"
#include "launch/generate.h"

int main(int argc, char** argv) {
  try {
    gpt::TrainConfig cfg;
    if (!gpt::parse_config(argc, argv, cfg)) return 0;
    std::string path = cfg.sample_checkpoint.empty() ? gpt::latest_checkpoint(cfg.run_dir) : cfg.sample_checkpoint;
    if (path.empty()) gpt::fail("no checkpoint in run.dir " + cfg.run_dir + " (set sample.checkpoint)");
    gpt::ParamStore store;
    std::unique_ptr<gpt::Model> built = gpt::make_model(cfg.model, store);
    gpt::Model& model = *built;
    store.materialize(cfg.device_kind());
    gpt::load_params(gpt::CheckpointSource(path), store);  // a checkpoint directory or consolidated file
    store.sync_compute();

    auto codec = gpt::make_text_codec(cfg);
    std::vector<int32_t> prompt = codec->encode(cfg.sample_prompt);
    if (prompt.empty()) prompt.push_back(0);
    gpt::SampleConfig sc{cfg.sample_tokens > 0 ? cfg.sample_tokens : 128, cfg.sample_temperature, cfg.sample_top_k, 0,
                         codec->vocab_size()};
    gpt::Rng rng(cfg.seed);
    std::fprintf(stderr, "sampling from %s\n", path.c_str());
    std::fputs(cfg.sample_prompt.c_str(), stdout);
    gpt::generate(model, prompt, sc, rng, [&](int32_t id) {
      std::fputs(codec->decode(id).c_str(), stdout);
      std::fflush(stdout);
    });
    std::fputs("\n", stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sample: error: %s\n", e.what());
  }
  return 1;
}
