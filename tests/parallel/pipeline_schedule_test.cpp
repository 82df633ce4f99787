// Pipeline schedules and their simulator, without MPI: every schedule for many shapes runs
// in the simulator, the bubbles compare with the textbook formulas, and the simulator
// rejects broken lists (it has to be able to fail for the rest to mean anything).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "core/error.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/schedule_sim.h"
#include "tests/support/error_of.h"

namespace gpt::parallel::pipeline {
namespace {

using Lists = std::vector<std::vector<Action>>;

constexpr ScheduleKind kAllKinds[] = {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::Interleaved,
                                      ScheduleKind::ZeroBubbleH1};
constexpr int kMaxStages = 8, kMaxMicro = 32, kMaxVirtual = 4;

Lists all_ranks(ScheduleKind kind, const PipelineShape& shape) {
  Lists lists;
  for (int r = 0; r < shape.stages; ++r) lists.push_back(make_schedule(kind, shape, r));
  return lists;
}

SimResult run(ScheduleKind kind, const PipelineShape& shape, const PassCosts& costs = {}) {
  return simulate(all_ranks(kind, shape), shape, costs);
}

// What validate_shape's comment in schedule.h promises to reject (for positive sizes).
bool documented_reject(ScheduleKind kind, const PipelineShape& s) {
  if (s.virtual_stages == 1) return false;
  return kind != ScheduleKind::Interleaved || s.micro_batches < s.stages;
}

// Calls f(kind, shape) for every shape the tests sweep that validate_shape accepts.
template <typename F>
void for_each_shape(F f) {
  for (ScheduleKind kind : kAllKinds)
    for (int p = 1; p <= kMaxStages; ++p)
      for (int m = 1; m <= kMaxMicro; ++m)
        for (int v = 1; v <= (kind == ScheduleKind::Interleaved ? kMaxVirtual : 1); ++v) {
          const PipelineShape shape{p, m, v};
          if (!documented_reject(kind, shape)) f(kind, shape);
        }
}

std::string name(ScheduleKind kind, const PipelineShape& s) {
  return std::string(schedule_name(kind)) + " p=" + std::to_string(s.stages) + " m=" +
         std::to_string(s.micro_batches) + " v=" + std::to_string(s.virtual_stages);
}

Action F(int m, int c) { return {Op::Forward, m, c}; }
Action B(int m, int c) { return {Op::Backward, m, c}; }
Action Bi(int m, int c) { return {Op::BackwardInput, m, c}; }
Action W(int m, int c) { return {Op::BackwardWeight, m, c}; }
Action send_act(int m, int c) { return {Op::SendAct, m, c}; }
Action recv_act(int m, int c) { return {Op::RecvAct, m, c}; }
Action send_grad(int m, int c) { return {Op::SendGrad, m, c}; }
Action recv_grad(int m, int c) { return {Op::RecvGrad, m, c}; }

TEST(PipelineSchedule, NamesParseAndPrint) {
  EXPECT_EQ(describe(F(3, 1)), "F(m3,c1)");
  EXPECT_EQ(describe(Bi(0, 2)), "Bi(m0,c2)");
  EXPECT_EQ(describe(recv_grad(5, 0)), "recv_grad(m5,c0)");
  EXPECT_TRUE(is_compute(Op::BackwardWeight));
  EXPECT_FALSE(is_compute(Op::SendAct));
  for (ScheduleKind kind : kAllKinds) EXPECT_EQ(parse_schedule(schedule_name(kind)), kind);
  const std::string err = error_of([] { parse_schedule("zb-h2"); });
  for (const char* word : {"'parallel.schedule'", "zb-h2", "gpipe", "1f1b", "interleaved", "zb-h1"})
    EXPECT_NE(err.find(word), std::string::npos) << err;
}

TEST(PipelineSchedule, ValidateShapeRejectsExactlyTheDocumentedShapes) {
  for (ScheduleKind kind : kAllKinds)
    for (int p = 1; p <= kMaxStages; ++p)
      for (int m = 1; m <= kMaxMicro; ++m)
        for (int v = 1; v <= kMaxVirtual; ++v) {
          const PipelineShape shape{p, m, v};
          const std::string err = error_of([&] { validate_shape(kind, shape); });
          ASSERT_EQ(!err.empty(), documented_reject(kind, shape)) << name(kind, shape) << ": " << err;
          if (err.empty()) continue;
          const char* key = kind == ScheduleKind::Interleaved ? "'train.grad_accum'" : "'parallel.virtual_stages'";
          EXPECT_NE(err.find(key), std::string::npos) << err;
          EXPECT_THROW(make_schedule(kind, shape, 0), Error);
        }
  EXPECT_NE(error_of([] { validate_shape(ScheduleKind::GPipe, {0, 4, 1}); }).find("'parallel.pp'"), std::string::npos);
  EXPECT_NE(error_of([] { validate_shape(ScheduleKind::OneFOneB, {2, 0, 1}); }).find("'train.grad_accum'"),
            std::string::npos);
  EXPECT_NE(error_of([] { validate_shape(ScheduleKind::Interleaved, {2, 4, 0}); }).find("'parallel.virtual_stages'"),
            std::string::npos);
  EXPECT_THROW(make_schedule(ScheduleKind::OneFOneB, {2, 4, 1}, 2), Error);
}

// The lists themselves: every pass once on the rank of its chunk, forward before backward
// before W, messages only between ranks, and the simulator accepts them under several costs.
TEST(PipelineSchedule, EveryScheduleRunsInTheSimulatorForEveryShape) {
  const PassCosts costs[] = {{1, 1, 1, 0}, {1, 1, 1, 0.5}, {1.5, 2, 0.5, 0.25}};
  for_each_shape([&](ScheduleKind kind, const PipelineShape& shape) {
    const Lists lists = all_ranks(kind, shape);
    std::map<std::tuple<int, int, Op>, int> position;  // (m, c, op) -> index on its rank
    for (int r = 0; r < shape.stages; ++r)
      for (size_t i = 0; i < lists[size_t(r)].size(); ++i) {
        const Action& a = lists[size_t(r)][i];
        ASSERT_EQ(rank_of_chunk(a.chunk, shape.stages), r) << name(kind, shape) << " " << describe(a);
        if (shape.stages == 1) {
          ASSERT_TRUE(is_compute(a.op)) << name(kind, shape) << " " << describe(a);
        }
        ASSERT_TRUE(position.emplace(std::make_tuple(a.micro, a.chunk, a.op), int(i)).second)
            << name(kind, shape) << ": twice " << describe(a);
      }
    for (int c = 0; c < shape.chunks(); ++c)
      for (int m = 0; m < shape.micro_batches; ++m) {
        auto at = [&](Op op) {
          auto it = position.find({m, c, op});
          return it == position.end() ? -1 : it->second;
        };
        const int f = at(Op::Forward), b = std::max(at(Op::Backward), at(Op::BackwardInput));
        ASSERT_GE(f, 0) << name(kind, shape);
        ASSERT_GT(b, f) << name(kind, shape) << " m" << m << " c" << c;
        if (kind == ScheduleKind::ZeroBubbleH1) {
          ASSERT_GT(at(Op::BackwardWeight), b) << name(kind, shape);
        }
      }
    for (const PassCosts& cost : costs) {
      const SimResult r = simulate(lists, shape, cost);
      ASSERT_TRUE(r.ok) << name(kind, shape) << " p2p " << cost.p2p << ": " << r.error;
    }
  });
}

TEST(PipelineSchedule, PeakActivations) {
  for_each_shape([](ScheduleKind kind, const PipelineShape& shape) {
    const SimResult r = run(kind, shape);
    ASSERT_TRUE(r.ok) << r.error;
    const int p = shape.stages, m = shape.micro_batches;
    for (int rank = 0; rank < p; ++rank) {
      const int peak = r.peak_activations[size_t(rank)];
      switch (kind) {
        case ScheduleKind::GPipe: EXPECT_EQ(peak, m) << name(kind, shape); break;
        case ScheduleKind::OneFOneB: EXPECT_EQ(peak, std::min(p - rank, m)) << name(kind, shape); break;
        // 1F1B's peak on the busiest rank, on every rank (see make_schedule).
        case ScheduleKind::ZeroBubbleH1: EXPECT_LE(peak, std::min(p, m)) << name(kind, shape); break;
        case ScheduleKind::Interleaved: EXPECT_LE(peak, m * shape.virtual_stages) << name(kind, shape); break;
      }
    }
    if (kind == ScheduleKind::ZeroBubbleH1) {
      EXPECT_EQ(r.peak_activations[0], std::min(p, m)) << name(kind, shape);
    }
  });
}

// The textbook formula assumes equal stages and no p2p latency; under that, GPipe and 1F1B
// match it for any forward / backward costs.
TEST(PipelineSchedule, GPipeAndOneFOneBBubbleIsTheFormula) {
  const PassCosts costs[] = {{1, 1, 1, 0}, {1, 0.5, 1.5, 0}, {2, 1, 0, 0}};
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    for (int p = 1; p <= kMaxStages; ++p)
      for (int m = 1; m <= kMaxMicro; ++m)
        for (const PassCosts& cost : costs) {
          const PipelineShape shape{p, m, 1};
          const SimResult r = run(kind, shape, cost);
          ASSERT_TRUE(r.ok) << r.error;
          EXPECT_NEAR(r.bubble_fraction, formula_bubble(kind, shape), 1e-12) << name(kind, shape);
        }
}

TEST(PipelineSchedule, ZeroBubbleH1BeatsOneFOneB) {
  for (int p = 2; p <= kMaxStages; ++p)
    for (int m = p; m <= kMaxMicro; ++m) {
      const PipelineShape shape{p, m, 1};
      const SimResult zb = run(ScheduleKind::ZeroBubbleH1, shape), base = run(ScheduleKind::OneFOneB, shape);
      ASSERT_TRUE(zb.ok && base.ok) << zb.error << base.error;
      EXPECT_LT(zb.bubble_fraction, base.bubble_fraction) << name(ScheduleKind::ZeroBubbleH1, shape);
      EXPECT_NEAR(zb.bubble_fraction, formula_bubble(ScheduleKind::ZeroBubbleH1, shape), 1e-12);
    }
}

TEST(PipelineSchedule, InterleavingBeatsOneFOneB) {
  for (int p = 2; p <= kMaxStages; ++p)
    for (int m = p; m <= kMaxMicro; ++m)
      for (int v = 2; v <= kMaxVirtual; ++v) {
        const PipelineShape shape{p, m, v};
        const SimResult inter = run(ScheduleKind::Interleaved, shape), base = run(ScheduleKind::OneFOneB, {p, m, 1});
        ASSERT_TRUE(inter.ok && base.ok) << inter.error << base.error;
        EXPECT_LT(inter.bubble_fraction, base.bubble_fraction) << name(ScheduleKind::Interleaved, shape);
        if (m % p == 0) {
          EXPECT_NEAR(inter.bubble_fraction, formula_bubble(ScheduleKind::Interleaved, shape), 1e-12)
              << name(ScheduleKind::Interleaved, shape);
        }
      }
}

TEST(PipelineSchedule, InterleavedWithOneChunkIsOneFOneB) {
  for (int p = 1; p <= kMaxStages; ++p)
    for (int m = 1; m <= 12; ++m)
      EXPECT_EQ(all_ranks(ScheduleKind::Interleaved, {p, m, 1}), all_ranks(ScheduleKind::OneFOneB, {p, m, 1}));
}

// Written out by hand: rank 0 warms up with p - 1 = 1 forward, rank 1 (last) has none.
const Lists kOneFOneB_p2_m3 = {
    {F(0, 0), send_act(0, 0),                                       // warm-up
     F(1, 0), send_act(1, 0), recv_grad(0, 0), B(0, 0),             // steady
     F(2, 0), send_act(2, 0), recv_grad(1, 0), B(1, 0),             //
     recv_grad(2, 0), B(2, 0)},                                     // cool-down
    {recv_act(0, 1), F(0, 1), B(0, 1), send_grad(0, 1),             // steady only
     recv_act(1, 1), F(1, 1), B(1, 1), send_grad(1, 1),             //
     recv_act(2, 1), F(2, 1), B(2, 1), send_grad(2, 1)},
};

TEST(PipelineSchedule, OneFOneBByHand) {
  const PipelineShape shape{2, 3, 1};
  EXPECT_EQ(all_ranks(ScheduleKind::OneFOneB, shape), kOneFOneB_p2_m3);
  // F = 1, B + W = 2: rank 1 is busy from 1 to 10; rank 0 ends with B(m2) at 10..12.
  const SimResult r = run(ScheduleKind::OneFOneB, shape);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.makespan, 12);
  EXPECT_EQ(r.peak_activations, (std::vector<int>{2, 1}));
}

TEST(PipelineSchedule, ZeroBubbleH1ByHand) {
  // Rank 1 runs B as 1F1B would but W one micro-batch late; rank 0 is 1F1B with B split.
  const Lists expected = {
      {F(0, 0), send_act(0, 0), F(1, 0), send_act(1, 0), recv_grad(0, 0), Bi(0, 0), W(0, 0), recv_grad(1, 0),
       Bi(1, 0), W(1, 0)},
      {recv_act(0, 1), F(0, 1), Bi(0, 1), send_grad(0, 1), recv_act(1, 1), F(1, 1), Bi(1, 1), send_grad(1, 1),
       W(0, 1), W(1, 1)},
  };
  const PipelineShape shape{2, 2, 1};
  EXPECT_EQ(all_ranks(ScheduleKind::ZeroBubbleH1, shape), expected);
  // F = B = W = 1. Rank 1: F0 1-2, B0 2-3, F1 3-4, B1 4-5, W0, W1 to 7. Rank 0: F0, F1 to 2,
  // B0 3-4, W0 4-5, B1 5-6, W1 6-7. 1F1B takes 3 (m + p - 1) = 9.
  const SimResult r = run(ScheduleKind::ZeroBubbleH1, shape);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.makespan, 7);
  EXPECT_EQ(r.peak_activations, (std::vector<int>{2, 2}));
}

// --- The simulator must catch broken schedules, naming the rank. ---

Lists without(Lists lists, int rank, std::vector<Action> drop) {
  auto& l = lists[size_t(rank)];
  for (const Action& a : drop) l.erase(std::find(l.begin(), l.end(), a));
  return lists;
}

void expect_rejected(const Lists& lists, const PipelineShape& shape, const std::string& rank,
                     const std::string& what) {
  const SimResult r = simulate(lists, shape);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find(rank), std::string::npos) << r.error;
  EXPECT_NE(r.error.find(what), std::string::npos) << r.error;
}

TEST(ScheduleSimulator, CatchesAMissingBackward) {
  expect_rejected(without(kOneFOneB_p2_m3, 0, {recv_grad(2, 0), B(2, 0)}), {2, 3, 1}, "rank 0",
                  "no backward of (m2,c0)");
  expect_rejected(without(kOneFOneB_p2_m3, 1, {B(2, 1), send_grad(2, 1)}), {2, 3, 1}, "rank 1", "deadlock");
  expect_rejected({{F(0, 0), Bi(0, 0)}}, {1, 1, 1}, "rank 0", "W(m0,c0) never runs");
}

TEST(ScheduleSimulator, CatchesAReceiveWithNoSend) {
  // Rank 1 waits for m2's activations, rank 0 for m2's gradient that rank 1 would send.
  expect_rejected(without(kOneFOneB_p2_m3, 0, {send_act(2, 0)}), {2, 3, 1}, "rank 1, action #8 recv_act(m2,c1)",
                  "deadlock");
}

TEST(ScheduleSimulator, CatchesABackwardBeforeItsForward) {
  expect_rejected({{B(0, 0), F(0, 0)}}, {1, 1, 1}, "rank 0, action #0 B(m0,c0)", "before F(m0,c0)");
  Lists lists = kOneFOneB_p2_m3;
  std::swap(lists[1][1], lists[1][2]);  // B(m0,c1) before F(m0,c1)
  expect_rejected(lists, {2, 3, 1}, "rank 1, action #1 B(m0,c1)", "before F(m0,c1)");
  expect_rejected({{F(0, 0), W(0, 0)}}, {1, 1, 1}, "rank 0", "needs an earlier Bi(m0,c0)");
}

TEST(ScheduleSimulator, CatchesASendOfTheWrongChunk) {
  Lists lists = kOneFOneB_p2_m3;
  lists[0][1] = send_act(0, 1);  // chunk 1 lives on rank 1
  expect_rejected(lists, {2, 3, 1}, "rank 0, action #1 send_act(m0,c1)", "runs on rank 1");
  // Interleaved p = 2, v = 2: rank 0 holds chunks 0 and 2, so chunk 2 is its own, but
  // F(m0,c2) has not run when the send meant for chunk 0 goes out.
  const PipelineShape shape{2, 2, 2};
  lists = all_ranks(ScheduleKind::Interleaved, shape);
  ASSERT_EQ(lists[0][1], send_act(0, 0));
  lists[0][1] = send_act(0, 2);
  expect_rejected(lists, shape, "rank 0, action #1 send_act(m0,c2)", "sends before F(m0,c2)");
}

TEST(ScheduleSimulator, CatchesReceivesInTheWrongMicroBatchOrder) {
  Lists lists = kOneFOneB_p2_m3;
  ASSERT_EQ(lists[1][4], recv_act(1, 1));
  std::swap(lists[1][4], lists[1][8]);  // rank 1 reads m2's activations before m1's
  expect_rejected(lists, {2, 3, 1}, "rank 1, action #4 recv_act(m2,c1)", "is for m1");
}

TEST(ScheduleSimulator, CatchesOtherMistakes) {
  const PipelineShape shape{2, 3, 1};
  Lists extra = kOneFOneB_p2_m3;
  extra[1].push_back(send_act(2, 1));  // the last chunk sends nowhere
  expect_rejected(extra, shape, "rank 1", "no next chunk");
  expect_rejected(without(kOneFOneB_p2_m3, 1, {recv_act(2, 1)}), shape, "rank 1, action #8 F(m2,c1)",
                  "before its input was received");
  expect_rejected({{F(0, 0), send_act(0, 0), F(0, 1), B(0, 1), B(0, 0)}}, {1, 1, 2}, "rank 0, action #1",
                  "on this rank too");
  expect_rejected({{F(0, 0), F(0, 0)}}, {1, 1, 1}, "rank 0", "second forward");
  expect_rejected({{F(0, 1)}}, {1, 1, 1}, "rank 0", "out of range");
  EXPECT_FALSE(simulate({{}}, {2, 1, 1}).ok);  // one list for two ranks
}

}  // namespace
}  // namespace gpt::parallel::pipeline
