// pretrain: trains a GPT-2-family model from a config file. Every failure the user can
// cause ends here as one line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "launch/config.h"
#include "launch/trainer.h"

int main(int argc, char** argv) {
  try {
    gpt::TrainConfig cfg;
    if (!gpt::parse_config(argc, argv, cfg)) return 0;
    gpt::Trainer trainer(cfg);
    trainer.run();
    return 0;
  } catch (const gpt::Error& e) {
    std::fprintf(stderr, "pretrain: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pretrain: error: %s\n", e.what());
  }
  return 1;
}
