// Pipeline schedules as data: for each rank, the ordered list of what it does in one
// training step. The schedule code knows nothing of the model or the communicator; the
// executor (pipeline_executor.h) runs a list, and the simulator (schedule_sim.h) checks
// lists for every shape without MPI.
//
// The model is cut into p * v chunks (p = stages = pipeline ranks, v = virtual stages
// per rank); chunk c runs on rank c % p, so with v > 1 a rank holds the non-adjacent
// chunks r, r + p, r + 2p, ... (Megatron's interleaving). Chunk 0 owns the embedding,
// chunk p*v - 1 the head and the loss. A step runs m micro-batches through every chunk.
//
// Meaning of the actions (m = micro-batch, c = chunk, both global indices):
//   Forward(m, c)        forward of micro-batch m on chunk c. Its input is the tokens
//                        when c == 0, else what RecvAct(m, c) received (listed earlier on
//                        this rank, or, when chunk c-1 is on this rank, the local output).
//                        On the last chunk it also computes the loss and the head's
//                        gradient, so no gradient arrives from downstream.
//   Backward(m, c)       the whole backward of (m, c): input and weight gradients.
//   BackwardInput(m, c)  zero-bubble split: the input gradient only ("B")...
//   BackwardWeight(m, c) ...and later the weight gradients ("W"); the activations of
//                        (m, c) are held until W has run.
//   SendAct(m, c)        send Forward(m, c)'s output to the rank of chunk c + 1.
//   RecvAct(m, c)        receive chunk c's input (the output of (m, c - 1)).
//   SendGrad(m, c)       send the input gradient of (m, c) to the rank of chunk c - 1.
//   RecvGrad(m, c)       receive the gradient of (m, c)'s output from chunk c + 1.
// Sends and receives only appear between different ranks (p > 1); between two chunks of
// one rank the output is handed over in memory. Sends are non-blocking; a receive
// blocks until its data is there. Per (sender, receiver, kind, chunk) messages are sent
// and received in micro-batch order, so they need no per-micro-batch tag.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpt::parallel::pipeline {

enum class Op : uint8_t {
  Forward,
  Backward,
  BackwardInput,
  BackwardWeight,
  SendAct,
  RecvAct,
  SendGrad,
  RecvGrad,
};
const char* op_name(Op op);  // "F", "B", "Bi", "W", "send_act", ...
bool is_compute(Op op);      // Forward, Backward, BackwardInput, BackwardWeight

struct Action {
  Op op;
  int micro;
  int chunk;
  bool operator==(const Action& o) const { return op == o.op && micro == o.micro && chunk == o.chunk; }
};
std::string describe(const Action& a);  // "F(m3,c1)"

enum class ScheduleKind { GPipe, OneFOneB, Interleaved, ZeroBubbleH1 };
// "gpipe", "1f1b", "interleaved", "zb-h1"; parse throws gpt::Error naming
// 'parallel.schedule' and the accepted values.
ScheduleKind parse_schedule(const std::string& name);
const char* schedule_name(ScheduleKind kind);

struct PipelineShape {
  int stages = 1;          // p: pipeline ranks
  int micro_batches = 1;   // m
  int virtual_stages = 1;  // v: chunks per rank (only Interleaved uses v > 1)
  int chunks() const { return stages * virtual_stages; }
};
inline int rank_of_chunk(int chunk, int stages) { return chunk % stages; }

// Throws gpt::Error with one line naming the config key when the shape does not suit
// the schedule. Rejected exactly: 'parallel.pp', 'train.grad_accum' (m) or
// 'parallel.virtual_stages' below 1; v > 1 with a schedule other than interleaved; and
// interleaved with v > 1 and m < p ('train.grad_accum' smaller than 'parallel.pp').
// Interleaved accepts m not a multiple of p (the last group of micro-batches is smaller).
void validate_shape(ScheduleKind kind, const PipelineShape& shape);

// The ordered actions of `rank` (0 <= rank < stages) for one step; validates the shape
// first (validate_shape).
//   GPipe:        all forwards, then all backwards (m micro-batches in flight).
//   OneFOneB:     p - rank - 1 warm-up forwards, then one forward / one backward, then
//                 the remaining backwards (at most p - rank in flight).
//   Interleaved:  1F1B over v chunks per rank, in groups of p micro-batches; with v == 1
//                 exactly OneFOneB.
//   ZeroBubbleH1: 1F1B's order with every backward split into B and W, the W passes
//                 delayed to fill the cool-down bubble. Same peak memory as 1F1B in the
//                 paper's sense, the most any rank holds: at most p on every rank (1F1B
//                 holds p on rank 0 only, p - rank on the others).
std::vector<Action> make_schedule(ScheduleKind kind, const PipelineShape& shape, int rank);

}  // namespace gpt::parallel::pipeline
