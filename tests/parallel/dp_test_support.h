// A tiny GPT trained through DataParallel on a deterministic synthetic token stream that
// honours data/batch.h's global order, for the layout-equality, traffic, memory, resume
// and fault tests. One instance per (dp group, accumulation) layout.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/model/gpt.h"
#include "core/param_store.h"
#include "parallel/data_parallel.h"

namespace gpt::parallel::testing {

struct TinySetup {
  GPTConfig model{/*n_layer=*/2, /*n_head=*/4, /*n_embd=*/64, /*vocab_size=*/256,
                  /*block_size=*/16};
  int B = 2;  // sequences per micro-batch
  int T = 16;
  float lr = 1e-3f;
  float clip = 0.5f;  // low enough that some steps clip
  uint64_t seed = 1234;
};

// Token j of global sample i (j in [0, T]): a pattern per sample plus hashed noise.
int32_t synthetic_token(int64_t sample, int j, int vocab);

class TinyTrainer {
 public:
  TinyTrainer(Communicator& comm, const Group& dp, int accum, DPConfig cfg, TinySetup s = {});
  // One global step s: samples s*G + (dp_rank*accum + m)*B + [0, B) for micro m, with
  // G = dp_size*accum*B. Returns the loss averaged over the dp group.
  float step(int64_t s);
  std::vector<float> params() const;  // the whole flat parameter buffer, host copy

  TinySetup setup;
  int accum;
  ParamStore store;
  std::unique_ptr<GPT> model;
  std::unique_ptr<Activations> acts;
  std::unique_ptr<DataParallel> dp;
  float last_norm = 0.f;
  // Called before each micro-batch's backward (fault injection hooks in here).
  std::function<void(int64_t step, int micro)> before_backward;
};

// ||a - b||_2 / ||b||_2 over the whole vector.
double relative_l2(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace gpt::parallel::testing
