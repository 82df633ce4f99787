// The four schedules as per-rank action lists. Each schedule first orders the compute
// passes of its rank (the part that differs between schedules); with_p2p then adds the
// messages around them, the same way for all four.
#include "parallel/pipeline/schedule.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace gpt::parallel::pipeline {

const char* op_name(Op op) {
  switch (op) {
    case Op::Forward: return "F";
    case Op::Backward: return "B";
    case Op::BackwardInput: return "Bi";
    case Op::BackwardWeight: return "W";
    case Op::SendAct: return "send_act";
    case Op::RecvAct: return "recv_act";
    case Op::SendGrad: return "send_grad";
    case Op::RecvGrad: return "recv_grad";
  }
  return "?";
}

bool is_compute(Op op) {
  return op == Op::Forward || op == Op::Backward || op == Op::BackwardInput || op == Op::BackwardWeight;
}

std::string describe(const Action& a) {
  return std::string(op_name(a.op)) + "(m" + std::to_string(a.micro) + ",c" + std::to_string(a.chunk) + ")";
}

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "gpipe") return ScheduleKind::GPipe;
  if (name == "1f1b") return ScheduleKind::OneFOneB;
  if (name == "interleaved") return ScheduleKind::Interleaved;
  if (name == "zb-h1") return ScheduleKind::ZeroBubbleH1;
  fail("config key 'parallel.schedule' = '" + name + "' is not a schedule (use gpipe, 1f1b, interleaved or zb-h1)");
}

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::GPipe: return "gpipe";
    case ScheduleKind::OneFOneB: return "1f1b";
    case ScheduleKind::Interleaved: return "interleaved";
    case ScheduleKind::ZeroBubbleH1: return "zb-h1";
  }
  return "?";
}

void validate_shape(ScheduleKind kind, const PipelineShape& shape) {
  const int p = shape.stages, m = shape.micro_batches, v = shape.virtual_stages;
  auto s = [](int x) { return std::to_string(x); };
  GPT_CHECK(p >= 1, "config key 'parallel.pp' = " + s(p) + " must be at least 1");
  GPT_CHECK(m >= 1, "config key 'train.grad_accum' (micro-batches per step) = " + s(m) + " must be at least 1");
  GPT_CHECK(v >= 1, "config key 'parallel.virtual_stages' = " + s(v) + " must be at least 1");
  GPT_CHECK(v == 1 || kind == ScheduleKind::Interleaved,
            "config key 'parallel.virtual_stages' = " + s(v) + " needs parallel.schedule 'interleaved', not '" +
                schedule_name(kind) + "'");
  // Interleaving sends micro-batches round the ranks in groups of p: with fewer than p
  // there is no full group and the warm-up below would be wrong.
  GPT_CHECK(v == 1 || m >= p, "config key 'train.grad_accum' (micro-batches per step) = " + s(m) +
                                  " is smaller than 'parallel.pp' = " + s(p) +
                                  "; the interleaved schedule with parallel.virtual_stages = " + s(v) +
                                  " needs at least one micro-batch per stage");
}

namespace {

Action forward(int micro, int chunk) { return {Op::Forward, micro, chunk}; }

// GPipe: every forward, then every backward, both in micro-batch order.
std::vector<Action> gpipe_compute(int p, int m, int rank) {
  (void)p;
  std::vector<Action> out;
  for (int i = 0; i < m; ++i) out.push_back(forward(i, rank));
  for (int i = 0; i < m; ++i) out.push_back({Op::Backward, i, rank});
  return out;
}

// PipeDream-Flush (Megatron's non-interleaved schedule): rank r runs p - r - 1 warm-up
// forwards, so that with the steady forward it holds at most p - r micro-batches, then
// alternates forward / backward, then drains the backwards left.
std::vector<Action> one_f_one_b_compute(int p, int m, int rank) {
  const int warmup = std::min(p - rank - 1, m);
  std::vector<Action> out;
  for (int i = 0; i < warmup; ++i) out.push_back(forward(i, rank));
  for (int i = 0; i < m - warmup; ++i) {
    out.push_back(forward(warmup + i, rank));
    out.push_back({Op::Backward, i, rank});
  }
  for (int i = m - warmup; i < m; ++i) out.push_back({Op::Backward, i, rank});
  return out;
}

// Megatron-LM's interleaved 1F1B (Narayanan et al. 2021, §2.2.2). Forwards go through
// the rank's local chunks in groups of p micro-batches: micro-batches 0..p-1 on local
// chunk 0, the same on local chunk 1, ..., then the next group. Backwards follow the same
// table with the local chunks reversed. Warm-up: (v - 1) * p forwards to reach the last
// local chunk with micro-batch 0, plus 2 (p - r - 1) so that downstream ranks never wait
// for this one in the steady state.
//
// When p does not divide m, Megatron's table makes the last group smaller, and then the
// group-of-p rhythm breaks: e.g. p = 4, m = 5, v = 3 deadlocks (rank 0 wants F(m4,c8)
// before B(m0,c8), rank 3 runs B(m0,c7) before F(m4,c7)). Instead the schedule is built
// for m rounded up to a multiple of p and the padding micro-batches are then dropped.
// That cannot deadlock: dropping whole micro-batches only removes passes and messages
// from a schedule that runs, keeping the order of the rest, and no remaining pass
// depends on a dropped one.
std::vector<Action> interleaved_compute(int p, int m, int v, int rank) {
  const int padded = (m + p - 1) / p * p;
  std::vector<std::pair<int, int>> table;  // (micro-batch, local chunk) in forward order
  for (int first = 0; first < padded; first += p)
    for (int local = 0; local < v; ++local)
      for (int i = first; i < first + p; ++i) table.emplace_back(i, local);
  auto chunk_of = [&](int local) { return local * p + rank; };
  auto fwd = [&](int k) { return forward(table[size_t(k)].first, chunk_of(table[size_t(k)].second)); };
  auto bwd = [&](int k) {
    return Action{Op::Backward, table[size_t(k)].first, chunk_of(v - 1 - table[size_t(k)].second)};
  };

  const int total = padded * v;
  const int warmup = std::min(total, 2 * (p - rank - 1) + (v - 1) * p);
  std::vector<Action> out;
  for (int k = 0; k < warmup; ++k) out.push_back(fwd(k));
  for (int k = 0; k < total - warmup; ++k) {
    out.push_back(fwd(warmup + k));
    out.push_back(bwd(k));
  }
  for (int k = total - warmup; k < total; ++k) out.push_back(bwd(k));
  out.erase(std::remove_if(out.begin(), out.end(), [&](const Action& a) { return a.micro >= m; }), out.end());
  return out;
}

// ZB-H1, the handcrafted schedule of Qi et al. 2023 ("Zero Bubble Pipeline
// Parallelism", §3.1): step x of rank r runs F(x), then B(x - (p-1-r)), then
// W(x - (p-1)), each when its micro-batch exists. Rank 0 is 1F1B with the backward split;
// a later rank runs B as soon as 1F1B would but delays W by r micro-batches, so the
// input gradient travels upstream without waiting for the weight gradient, and the
// delayed W passes fill the cool-down. Every rank holds at most p micro-batches (W
// releases them), which is 1F1B's peak, on rank 0; ranks r > 0 hold up to r more than
// under 1F1B. With F = B = W the bubble is (p-1)/(3m+p-1), a third of 1F1B's time.
std::vector<Action> zb_h1_compute(int p, int m, int rank) {
  std::vector<Action> out;
  for (int x = 0; x < m + p - 1; ++x) {
    if (x < m) out.push_back(forward(x, rank));
    const int b = x - (p - 1 - rank), w = x - (p - 1);
    if (b >= 0 && b < m) out.push_back({Op::BackwardInput, b, rank});
    if (w >= 0 && w < m) out.push_back({Op::BackwardWeight, w, rank});
  }
  return out;
}

// Adds the messages of a rank's compute list: a receive right before the pass that
// needs it, a send right after the pass that produces it. Neighbouring chunks are on
// different ranks exactly when p > 1 (chunk c runs on c % p), so p == 1 gets none.
std::vector<Action> with_p2p(const std::vector<Action>& compute, const PipelineShape& shape) {
  if (shape.stages == 1) return compute;
  const int last_chunk = shape.chunks() - 1;
  std::vector<Action> out;
  for (const Action& a : compute) {
    const bool first = a.chunk == 0, last = a.chunk == last_chunk;
    switch (a.op) {
      case Op::Forward:
        if (!first) out.push_back({Op::RecvAct, a.micro, a.chunk});
        out.push_back(a);
        if (!last) out.push_back({Op::SendAct, a.micro, a.chunk});
        break;
      case Op::Backward:
      case Op::BackwardInput:
        if (!last) out.push_back({Op::RecvGrad, a.micro, a.chunk});
        out.push_back(a);
        if (!first) out.push_back({Op::SendGrad, a.micro, a.chunk});
        break;
      default: out.push_back(a);
    }
  }
  return out;
}

}  // namespace

std::vector<Action> make_schedule(ScheduleKind kind, const PipelineShape& shape, int rank) {
  validate_shape(kind, shape);
  const int p = shape.stages, m = shape.micro_batches, v = shape.virtual_stages;
  GPT_CHECK(rank >= 0 && rank < p,
            "pipeline rank " + std::to_string(rank) + " is outside 0.." + std::to_string(p - 1));
  std::vector<Action> compute;
  switch (kind) {
    case ScheduleKind::GPipe: compute = gpipe_compute(p, m, rank); break;
    case ScheduleKind::OneFOneB: compute = one_f_one_b_compute(p, m, rank); break;
    // One chunk per rank: interleaving is plain 1F1B (Megatron's warm-up formula would
    // run p - r - 1 extra forwards for nothing).
    case ScheduleKind::Interleaved:
      compute = v == 1 ? one_f_one_b_compute(p, m, rank) : interleaved_compute(p, m, v, rank);
      break;
    case ScheduleKind::ZeroBubbleH1: compute = zb_h1_compute(p, m, rank); break;
  }
  return with_p2p(compute, shape);
}

}  // namespace gpt::parallel::pipeline
