// Stages equal the whole: the GPT cut into 2 and 3 layer ranges, run one stage after the
// other in one process (activations and their gradients handed over by hand, as a
// pipeline's send/recv would), with 4 micro-batches in flight in an arbitrary order,
// gives bit-identical losses and parameter gradients to the whole model run with the
// same micro-batch order, in fp32.
//
// The one exception is the tied token embedding: the whole model adds the head's and the
// embedding's gradient into one wte buffer, interleaved; a pipeline has a copy on the
// first and on the last stage and sums them at the end. That is a different summation
// order, so wte is compared within fp32 rounding of the sum instead of bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/model/gpt.h"
#include "core/rng.h"

namespace gpt {
namespace {

constexpr uint64_t kSeed = 21;
constexpr int B = 2, T = 16, kMicro = 4;
// Forward and backward visit the micro-batches in different orders, all 4 in flight.
const int kForwardOrder[kMicro] = {2, 0, 3, 1};
const int kBackwardOrder[kMicro] = {1, 3, 0, 2};

GPTConfig config() {
  GPTConfig c;
  c.n_layer = 6, c.n_head = 2, c.n_embd = 32, c.vocab_size = 101, c.block_size = 16;
  return c;
}

struct Batch {
  Tensor tokens, targets;
};

std::vector<Batch> batches() {
  Rng rng(5);
  std::vector<Batch> out(kMicro);
  for (Batch& b : out) {
    b.tokens = empty({B, T}, DType::I32), b.targets = empty({B, T}, DType::I32);
    for (int i = 0; i < B * T; ++i) {
      b.tokens.i32()[i] = int32_t(rng.next_u64() % 101);
      b.targets.i32()[i] = int32_t(rng.next_u64() % 101);
    }
  }
  return out;
}

struct Stage {
  ParamStore store;
  std::unique_ptr<GPT> model;
  std::vector<std::unique_ptr<Activations>> acts;
};

struct Result {
  std::vector<float> losses;                     // per micro-batch
  std::map<std::string, std::vector<float>> grads;  // summed over stages holding the name
};

// Runs the model cut at `cuts` (layer boundaries, e.g. {3} for [0,3) [3,6)); with
// `one_at_a_time`, each micro-batch's forward and backward run back to back (in the
// backward order) with a single activations object, the trainer's way. With `split`,
// backward is the zero-bubble pair: every micro-batch's input pass first, then all the
// weight passes in the same micro-batch order (so each gradient sums in the same order).
Result run(const std::vector<int>& cuts, Recompute mode = Recompute::None, bool one_at_a_time = false,
           bool split = false) {
  const GPTConfig cfg = config();
  std::vector<int> bounds{0};
  bounds.insert(bounds.end(), cuts.begin(), cuts.end());
  bounds.push_back(cfg.n_layer);
  const size_t S = bounds.size() - 1;
  std::vector<Stage> stages(S);
  for (size_t s = 0; s < S; ++s) {
    StageSpec spec{bounds[s], bounds[s + 1], s == 0, s + 1 == S};
    stages[s].model = std::make_unique<GPT>(cfg, stages[s].store, mode, spec);
    stages[s].store.materialize(Device::CPU);
    stages[s].store.init(kSeed);
    stages[s].store.zero_grads();
    for (int m = 0; m < kMicro; ++m) stages[s].acts.push_back(stages[s].model->make_activations());
  }
  const std::vector<Batch> data = batches();
  const float dloss = 1.f / float(B * T * kMicro);
  Result r;
  r.losses.assign(kMicro, 0.f);
  auto acts = [&](size_t s, int m) -> Activations& { return *stages[s].acts[one_at_a_time ? 0 : size_t(m)]; };
  auto forward = [&](int m) {
    const Tensor* input = &data[size_t(m)].tokens;
    for (size_t s = 0; s < S; ++s) {
      const float loss = stages[s].model->forward_train(acts(s, m), *input, &data[size_t(m)].targets, dloss);
      if (s + 1 == S) r.losses[size_t(m)] = loss;
      input = &acts(s, m).output;
    }
  };
  auto backward = [&](int m) {
    const Tensor* dout = nullptr;
    for (size_t s = S; s-- > 0;) {
      if (split) stages[s].model->backward_input(acts(s, m), dout);
      else stages[s].model->backward(acts(s, m), dout);
      dout = &acts(s, m).input_grad;
    }
  };
  if (split) {
    for (int m : kForwardOrder) forward(m);
    for (int m : kBackwardOrder) backward(m);
    for (int m : kBackwardOrder)
      for (size_t s = S; s-- > 0;) stages[s].model->backward_weight(acts(s, m));
  } else if (one_at_a_time) {
    for (int m : kBackwardOrder) forward(m), backward(m);
  } else {
    for (int m : kForwardOrder) forward(m);
    for (int m : kBackwardOrder) backward(m);
  }
  for (Stage& st : stages)
    for (int i = 0; i < st.store.size(); ++i) {
      const Param& p = st.store.at(i);
      std::vector<float> g = to_host_f32(p.grad);
      auto [it, fresh] = r.grads.emplace(p.name, g);
      if (!fresh)  // the tied wte: the head stage's copy adds to the embedding stage's
        for (size_t k = 0; k < g.size(); ++k) it->second[k] += g[k];
    }
  return r;
}

void expect_equal_to_whole(const Result& got, const Result& whole) {
  ASSERT_EQ(got.losses.size(), whole.losses.size());
  for (size_t m = 0; m < whole.losses.size(); ++m)
    EXPECT_EQ(got.losses[m], whole.losses[m]) << "micro-batch " << m;
  ASSERT_EQ(got.grads.size(), whole.grads.size());
  for (const auto& [name, want] : whole.grads) {
    const std::vector<float>& g = got.grads.at(name);
    ASSERT_EQ(g.size(), want.size()) << name;
    if (name != "wte") {
      EXPECT_EQ(std::memcmp(g.data(), want.data(), want.size() * 4), 0) << "gradient of " << name;
      continue;
    }
    double diff = 0, scale = 0;
    for (size_t k = 0; k < want.size(); ++k) {
      diff = std::max(diff, std::fabs(double(g[k]) - double(want[k])));
      scale = std::max(scale, std::fabs(double(want[k])));
    }
    EXPECT_LE(diff / scale, 1e-6) << "tied wte gradient";
  }
}

TEST(Stages, TwoAndThreeLayerRangesEqualTheWholeModel) {
  const Result whole = run({});
  // The in-flight reference itself equals the plain one-micro-batch-at-a-time run, so
  // no activation is shared between micro-batches.
  expect_equal_to_whole(run({}, Recompute::None, /*one_at_a_time=*/true), whole);
  for (const std::vector<int>& cuts : {std::vector<int>{3}, std::vector<int>{2, 4}, std::vector<int>{1, 5}}) {
    SCOPED_TRACE("cuts at " + std::to_string(cuts[0]) + (cuts.size() > 1 ? "," + std::to_string(cuts[1]) : ""));
    expect_equal_to_whole(run(cuts), whole);
  }
}

// Recomputation keeps only what each micro-batch needs in its own activations, so
// several in flight still give the whole model's gradients.
TEST(Stages, RecomputationWithMicroBatchesInFlight) {
  const Result whole = run({});
  for (Recompute mode : {Recompute::Selective, Recompute::Full})
    expect_equal_to_whole(run({2, 4}, mode), whole);
}

// Zero-bubble's split backward (input passes now, weight passes later) adds up to the
// same gradients as whole backward passes, bit for bit, on the whole model and on stages.
TEST(Stages, SplitBackwardEqualsWholeBackward) {
  const Result whole = run({});
  expect_equal_to_whole(run({}, Recompute::None, false, /*split=*/true), whole);
  expect_equal_to_whole(run({2, 4}, Recompute::None, false, /*split=*/true), whole);
  // The weight pass reads saved activations, which recomputation would have reused.
  ParamStore store;
  GPT model(config(), store, Recompute::Selective);
  store.materialize(Device::CPU);
  store.init(kSeed);
  auto acts = model.make_activations();
  const std::vector<Batch> data = batches();
  model.forward_train(*acts, data[0].tokens, &data[0].targets, 1.f);
  EXPECT_THROW(model.backward_input(*acts, nullptr), Error);
}

// A stage holds only its own parameters, under their global names; the head stage has
// the tied embedding's copy, drawn from the same global name, so it starts equal.
TEST(Stages, StagesRegisterTheirOwnParametersUnderGlobalNames) {
  const GPTConfig cfg = config();
  ParamStore first, middle, last;
  GPT a(cfg, first, Recompute::None, StageSpec{0, 2, true, false});
  GPT b(cfg, middle, Recompute::None, StageSpec{2, 4, false, false});
  GPT c(cfg, last, Recompute::None, StageSpec{4, 6, false, true});
  EXPECT_NE(first.find("wte"), nullptr);
  EXPECT_NE(first.find("blocks.1.mlp.fc.weight"), nullptr);
  EXPECT_EQ(first.find("lnf.weight"), nullptr);
  EXPECT_EQ(middle.find("wte"), nullptr);
  EXPECT_NE(middle.find("blocks.2.attn.qkv.weight"), nullptr);
  EXPECT_EQ(middle.find("blocks.1.attn.qkv.weight"), nullptr);
  EXPECT_NE(last.find("lnf.weight"), nullptr);
  EXPECT_EQ(last.find("wpe"), nullptr);
  for (ParamStore* s : {&first, &last}) s->materialize(Device::CPU), s->init(kSeed);
  EXPECT_EQ(to_host_f32(first.find("wte")->value), to_host_f32(last.find("wte")->value));
  EXPECT_THROW(GPT(cfg, middle, Recompute::None, StageSpec{4, 7, false, false}), Error);
}

}  // namespace
}  // namespace gpt
