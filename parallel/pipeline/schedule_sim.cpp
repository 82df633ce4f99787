// The simulator: every rank walks its list in order with its own clock. Messages travel
// on FIFO links, one per (kind, sending chunk), which is how the executor matches them
// without tags; a receive takes the oldest message on its link and blocks while there is
// none. Each rank's clock then depends only on its list and the arrival times it reads,
// so the order in which ranks are stepped does not change any time. Stepping always the
// runnable rank with the earliest clock makes "the first violation" the earliest one in
// simulated time (ties: the lower rank).
#include "parallel/pipeline/schedule_sim.h"

#include <algorithm>
#include <deque>

namespace gpt::parallel::pipeline {
namespace {

struct Message {
  int micro;
  double arrival;
};

// What has happened to one (micro-batch, chunk).
struct PassState {
  bool forward = false;
  bool act_received = false;   // RecvAct(m, c)
  bool grad_received = false;  // RecvGrad(m, c)
  bool input_grad = false;     // Backward or BackwardInput ran
  bool split = false;          // ... and it was BackwardInput, so W must follow
  bool done = false;           // the last backward pass ran (activations released)
  bool act_sent = false;
  bool grad_sent = false;
};

class Simulation {
 public:
  Simulation(const std::vector<std::vector<Action>>& lists, const PipelineShape& shape, const PassCosts& costs)
      : lists_(lists), costs_(costs), p_(shape.stages), m_(shape.micro_batches),
        chunks_(shape.chunks()), state_(size_t(m_) * size_t(chunks_)),
        act_links_(size_t(chunks_)), grad_links_(size_t(chunks_)), next_(size_t(p_), 0),
        clock_(size_t(p_), 0.0), held_(size_t(p_), 0) {
    result_.busy.assign(size_t(p_), 0.0);
    result_.peak_activations.assign(size_t(p_), 0);
  }

  SimResult run() {
    while (error_.empty()) {
      const int rank = pick_rank();
      if (rank < 0) break;
      step(rank);
    }
    if (error_.empty()) check_deadlock();
    if (error_.empty()) error_ = incomplete();
    result_.ok = error_.empty();
    result_.error = error_;
    for (int r = 0; r < p_; ++r) result_.makespan = std::max(result_.makespan, clock_[size_t(r)]);
    double busy = 0;
    for (double b : result_.busy) busy += b;
    result_.bubble_fraction = result_.makespan > 0 ? 1 - busy / (p_ * result_.makespan) : 0;
    return result_;
  }

 private:
  PassState& at(int micro, int chunk) { return state_[size_t(micro) * size_t(chunks_) + size_t(chunk)]; }
  bool finished(int rank) const { return next_[size_t(rank)] >= lists_[size_t(rank)].size(); }
  const Action& next_action(int rank) const { return lists_[size_t(rank)][next_[size_t(rank)]]; }
  int rank_of(int chunk) const { return rank_of_chunk(chunk, p_); }
  bool in_range(const Action& a) const { return a.micro >= 0 && a.micro < m_ && a.chunk >= 0 && a.chunk < chunks_; }

  // The link a receive on `rank` reads: activations come from chunk c - 1, gradients from
  // c + 1. Null when the action is no valid receive there, so that step() reports why
  // instead of the rank waiting forever.
  std::deque<Message>* recv_link(int rank, const Action& a) {
    if (!in_range(a) || rank_of(a.chunk) != rank) return nullptr;
    const bool act = a.op == Op::RecvAct;
    if (!act && a.op != Op::RecvGrad) return nullptr;
    const int from = act ? a.chunk - 1 : a.chunk + 1;
    if (from < 0 || from >= chunks_ || rank_of(from) == rank) return nullptr;
    const PassState& s = at(a.micro, a.chunk);
    if (act ? s.act_received : s.grad_received) return nullptr;
    return act ? &act_links_[size_t(from)] : &grad_links_[size_t(from)];
  }
  bool blocked(int rank) {
    const std::deque<Message>* link = recv_link(rank, next_action(rank));
    return link != nullptr && link->empty();
  }

  int pick_rank() {
    int best = -1;
    for (int r = 0; r < p_; ++r) {
      if (finished(r) || blocked(r)) continue;
      if (best < 0 || clock_[size_t(r)] < clock_[size_t(best)]) best = r;
    }
    return best;
  }

  // Records the violation at `rank`'s next action; false, for `return fail_at(...)`.
  bool fail_at(int rank, const std::string& what) {
    const size_t index = next_[size_t(rank)];
    error_ = "rank " + std::to_string(rank) + ", action #" + std::to_string(index) + " " +
             describe(lists_[size_t(rank)][index]) + ": " + what;
    return false;
  }

  // Runs `rank`'s next action; false when it is a violation (recorded in error_).
  bool step(int rank) {
    const Action& a = next_action(rank);
    if (!in_range(a))
      return fail_at(rank, "micro-batch or chunk out of range (m < " + std::to_string(m_) + ", c < " +
                               std::to_string(chunks_) + ")");
    if (rank_of(a.chunk) != rank)
      return fail_at(rank, "chunk " + std::to_string(a.chunk) + " runs on rank " + std::to_string(rank_of(a.chunk)));
    if (!(is_compute(a.op) ? compute(rank, a) : communicate(rank, a))) return false;
    ++next_[size_t(rank)];
    return true;
  }

  // Whether the output gradient of (m, c) is there: none is needed on the last chunk
  // (the loss makes it), else it was received or, on this rank, computed by (m, c + 1).
  bool output_grad_ready(int micro, int chunk) {
    if (chunk == chunks_ - 1) return true;
    if (rank_of(chunk + 1) == rank_of(chunk)) return at(micro, chunk + 1).input_grad;
    return at(micro, chunk).grad_received;
  }

  bool compute(int rank, const Action& a) {
    PassState& s = at(a.micro, a.chunk);
    const std::string fwd = describe({Op::Forward, a.micro, a.chunk});
    double cost = 0;
    switch (a.op) {
      case Op::Forward: {
        if (s.forward) return fail_at(rank, "a second forward of this micro-batch and chunk");
        const bool local = a.chunk > 0 && rank_of(a.chunk - 1) == rank;
        const bool input = a.chunk == 0 || (local ? at(a.micro, a.chunk - 1).forward : s.act_received);
        if (!input)
          return fail_at(rank, local ? "runs before " + describe({Op::Forward, a.micro, a.chunk - 1}) +
                                           " produced its input"
                                     : "runs before its input was received (no earlier " +
                                           describe({Op::RecvAct, a.micro, a.chunk}) + ")");
        s.forward = true;
        held_[size_t(rank)] += 1;
        result_.peak_activations[size_t(rank)] =
            std::max(result_.peak_activations[size_t(rank)], held_[size_t(rank)]);
        cost = costs_.forward;
        break;
      }
      case Op::Backward:
      case Op::BackwardInput: {
        if (!s.forward) return fail_at(rank, "runs before " + fwd);
        if (s.input_grad) return fail_at(rank, "a second backward of this micro-batch and chunk");
        if (!output_grad_ready(a.micro, a.chunk))
          return fail_at(rank, "runs before its output gradient arrived (no earlier " +
                                   describe({Op::RecvGrad, a.micro, a.chunk}) + " or local backward of chunk " +
                                   std::to_string(a.chunk + 1) + ")");
        s.input_grad = true;
        s.split = a.op == Op::BackwardInput;
        if (!s.split) release(rank, s);
        cost = s.split ? costs_.backward_input : costs_.backward_input + costs_.backward_weight;
        break;
      }
      case Op::BackwardWeight:
        if (!s.input_grad || !s.split)
          return fail_at(rank, "needs an earlier " + describe({Op::BackwardInput, a.micro, a.chunk}) +
                                   (s.input_grad ? " (this pass ran a whole Backward)" : ""));
        if (s.done) return fail_at(rank, "a second W of this micro-batch and chunk");
        release(rank, s);
        cost = costs_.backward_weight;
        break;
      default: break;
    }
    clock_[size_t(rank)] += cost;
    result_.busy[size_t(rank)] += cost;
    return true;
  }

  void release(int rank, PassState& s) {
    s.done = true;
    held_[size_t(rank)] -= 1;
  }

  bool communicate(int rank, const Action& a) {
    PassState& s = at(a.micro, a.chunk);
    const bool to_next = a.op == Op::SendAct || a.op == Op::RecvGrad;  // the link to chunk c + 1
    const int peer_chunk = to_next ? a.chunk + 1 : a.chunk - 1;
    if (peer_chunk < 0 || peer_chunk >= chunks_)
      return fail_at(rank, to_next ? "the last chunk has no next chunk" : "chunk 0 has no previous chunk");
    if (rank_of(peer_chunk) == rank)
      return fail_at(rank, "chunk " + std::to_string(peer_chunk) +
                               " is on this rank too; the hand-over is in memory, not a message");
    const std::string peer = "rank " + std::to_string(rank_of(peer_chunk));
    const double now = clock_[size_t(rank)];
    switch (a.op) {
      case Op::SendAct:
        if (!s.forward) return fail_at(rank, "sends before " + describe({Op::Forward, a.micro, a.chunk}));
        if (s.act_sent) return fail_at(rank, "sent twice");
        s.act_sent = true;
        act_links_[size_t(a.chunk)].push_back({a.micro, now + costs_.p2p});
        return true;
      case Op::SendGrad:
        if (!s.input_grad)
          return fail_at(rank, "sends before the backward of (m" + std::to_string(a.micro) + ",c" +
                                   std::to_string(a.chunk) + ") made its input gradient");
        if (s.grad_sent) return fail_at(rank, "sent twice");
        s.grad_sent = true;
        grad_links_[size_t(a.chunk)].push_back({a.micro, now + costs_.p2p});
        return true;
      case Op::RecvAct:
      case Op::RecvGrad: {
        bool& received = a.op == Op::RecvAct ? s.act_received : s.grad_received;
        if (received) return fail_at(rank, "received twice");
        std::deque<Message>& link = *recv_link(rank, a);  // not empty: pick_rank skips blocked ranks
        const Message msg = link.front();
        if (msg.micro != a.micro)
          return fail_at(rank, "the next message from " + peer + " on this link is for m" + std::to_string(msg.micro) +
                                   " (messages of one kind and chunk are received in the order they are sent)");
        link.pop_front();
        received = true;
        clock_[size_t(rank)] = std::max(now, msg.arrival);
        return true;
      }
      default: return true;
    }
  }

  // No rank can move but some have actions left: each waits on a message never sent.
  void check_deadlock() {
    std::string waiting;
    for (int r = 0; r < p_; ++r) {
      if (finished(r)) continue;
      const Action& a = next_action(r);
      const int from = rank_of(a.op == Op::RecvAct ? a.chunk - 1 : a.chunk + 1);
      waiting += std::string(waiting.empty() ? "" : "; ") + "rank " + std::to_string(r) + ", action #" +
                 std::to_string(next_[size_t(r)]) + " " + describe(a) + " waits for rank " + std::to_string(from);
    }
    if (!waiting.empty()) error_ = "deadlock, a receive whose message is never sent: " + waiting;
  }

  // Every rank ran its whole list: every pass must have run and every message been read.
  // The first gap, by chunk then micro-batch; "" when there is none. (A message left
  // unread means its pass never ran, so the passes are checked first, naming the cause.)
  std::string incomplete() {
    for (int c = 0; c < chunks_; ++c) {
      const std::string rank = "rank " + std::to_string(rank_of(c)) + ": ";
      for (int m = 0; m < m_; ++m) {
        const PassState& s = at(m, c);
        auto name = [&](Op op) { return describe({op, m, c}); };
        if (!s.forward) return rank + name(Op::Forward) + " never runs";
        if (!s.input_grad)
          return rank + "no backward of (m" + std::to_string(m) + ",c" + std::to_string(c) + ") (B, or Bi then W)";
        if (!s.done) return rank + name(Op::BackwardWeight) + " never runs after " + name(Op::BackwardInput);
      }
    }
    for (int c = 0; c < chunks_; ++c) {
      const std::string rank = "rank " + std::to_string(rank_of(c)) + ": ";
      if (!act_links_[size_t(c)].empty())
        return rank + describe({Op::SendAct, act_links_[size_t(c)].front().micro, c}) + " is never received";
      if (!grad_links_[size_t(c)].empty())
        return rank + describe({Op::SendGrad, grad_links_[size_t(c)].front().micro, c}) + " is never received";
    }
    return "";
  }

  const std::vector<std::vector<Action>>& lists_;
  const PassCosts costs_;
  const int p_, m_, chunks_;
  std::vector<PassState> state_;
  std::vector<std::deque<Message>> act_links_;   // by sending chunk c: SendAct(m, c) -> RecvAct(m, c + 1)
  std::vector<std::deque<Message>> grad_links_;  // by sending chunk c: SendGrad(m, c) -> RecvGrad(m, c - 1)
  std::vector<size_t> next_;   // per rank: index of the next action
  std::vector<double> clock_;  // per rank: when the next action may start
  std::vector<int> held_;      // per rank: (m, c) whose activations are held now
  std::string error_;
  SimResult result_;
};

}  // namespace

SimResult simulate(const std::vector<std::vector<Action>>& per_rank, const PipelineShape& shape,
                   const PassCosts& costs) {
  SimResult bad;
  if (shape.stages < 1 || shape.micro_batches < 1 || shape.virtual_stages < 1) {
    bad.error = "pipeline shape needs stages, micro-batches and virtual stages >= 1";
    return bad;
  }
  if (int(per_rank.size()) != shape.stages) {
    bad.error = "got action lists for " + std::to_string(per_rank.size()) + " ranks, the shape has " +
                std::to_string(shape.stages) + " stages";
    return bad;
  }
  return Simulation(per_rank, shape, costs).run();
}

double formula_bubble(ScheduleKind kind, const PipelineShape& shape) {
  const double p = shape.stages, m = shape.micro_batches, v = shape.virtual_stages;
  switch (kind) {
    case ScheduleKind::GPipe:
    case ScheduleKind::OneFOneB: return (p - 1) / (m + p - 1);
    case ScheduleKind::Interleaved: return (p - 1) / (v * m + p - 1);
    // Qi et al.: a bubble of (p-1)(T_F + T_B - T_W) per rank against m (T_F + T_B + T_W)
    // of work; with the paper's T_F = T_B = T_W that is (p-1) / (3m + p-1).
    case ScheduleKind::ZeroBubbleH1: return (p - 1) / (3 * m + p - 1);
  }
  return 0;
}

}  // namespace gpt::parallel::pipeline
