// The parts of the communicator layer every implementation shares: handles, traffic
// counters and their formulas, group naming, MPI start-up.
#include "parallel/communicator.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "parallel/comm_handle_state.h"

namespace gpt::parallel {

std::string Group::describe() const {
  std::ostringstream os;
  os << "'" << name << "' [";
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? " " : "") << ranks[i];
  os << "]";
  return os.str();
}

namespace {
std::string member_title(const Group& g) {
  if (g.name == "pp") return "pipeline stage";
  if (g.name == "tp") return "tensor-parallel rank";
  if (g.name == "dp") return "data-parallel rank";
  return "index";
}
}  // namespace

std::string describe_call(int world_rank, const std::string& op, const Group& g, int peer) {
  const std::string title = member_title(g);
  std::string s = "rank " + std::to_string(world_rank) + " (" + title + " " + std::to_string(g.rank) + " in '" +
                  g.name + "'): " + op;
  if (peer >= 0) s += (op == "recv" ? " from " : " to ") + title + " " + std::to_string(peer);
  return s + " on group " + g.describe();
}

void abort_on_timeout(const std::string& what, double waited_s) {
  std::fprintf(stderr,
               "gpt comm timeout: %s not complete after %.1f s; a peer rank has stopped or "
               "hangs. Aborting the job.\n",
               what.c_str(), waited_s);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();  // MPI_Abort does not return; keep the compiler and the reader sure
}

void CommHandle::wait() {
  if (!state_) return;
  if (state_->wait_hook) {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->done) state_->wait_hook();
    state_->done = true;
    return;
  }
  std::unique_lock<std::mutex> lock(state_->mu);
  // The progress engine enforces the timeout itself; this longer bound only catches a
  // progress engine that is itself stuck.
  const double bound_s = state_->timeout_s + 10.0;
  if (!state_->cv.wait_for(lock, std::chrono::duration<double>(bound_s),
                           [&] { return state_->done; }))
    abort_on_timeout(state_->what + " (waiting thread)", bound_s);
}

bool CommHandle::done() const {
  if (!state_) return true;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

void TrafficCounter::add(const std::string& group, const std::string& op, double bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  TrafficCount& c = counts_[{group, op}];
  c.bytes += bytes;
  c.calls += 1;
}

TrafficCount TrafficCounter::get(const std::string& group, const std::string& op) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find({group, op});
  return it == counts_.end() ? TrafficCount{} : it->second;
}

double TrafficCounter::group_bytes(const std::string& group) const {
  std::lock_guard<std::mutex> lock(mu_);
  double sum = 0;
  for (const auto& [key, c] : counts_)
    if (key.first == group) sum += c.bytes;
  return sum;
}

void TrafficCounter::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  counts_.clear();
}

std::string TrafficCounter::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream os;
  for (const auto& [key, c] : counts_)
    os << "group " << key.first << " " << key.second << ": " << c.calls << " calls, "
       << c.bytes << " bytes\n";
  return os.str();
}

int place_in_partition(Group& g, const std::vector<std::vector<int>>& partition, int rank) {
  int color = -1;
  for (size_t i = 0; i < partition.size(); ++i)
    for (size_t j = 0; j < partition[i].size(); ++j)
      if (partition[i][j] == rank) {
        GPT_CHECK(color < 0, "group '" + g.name + "': rank " + std::to_string(rank) +
                                 " appears in two groups of the partition");
        color = int(i);
        g.ranks = partition[i];
        g.rank = int(j);
      }
  GPT_CHECK(color >= 0, "group '" + g.name + "': rank " + std::to_string(rank) +
                            " is in no group of the partition");
  return color;
}

double ring_allreduce_bytes(double bytes, int n) {
  return n <= 1 ? 0.0 : 2.0 * double(n - 1) / double(n) * bytes;
}

double ring_gather_scatter_bytes(double total_bytes, double own_bytes, int n) {
  return n <= 1 ? 0.0 : total_bytes - own_bytes;
}

Group Communicator::world_group() {
  std::vector<int> all(static_cast<size_t>(world_size()));
  std::iota(all.begin(), all.end(), 0);
  return make_group("world", std::vector<std::vector<int>>{all});
}

namespace {
// A rank that calls exit() mid-job would otherwise leave its peers blocked in a
// collective until mpirun notices; abort the job at once and say which rank left.
// Registered only by an MpiSession that initialised MPI; after MPI_Finalize it is a no-op.
void abort_if_exiting_mid_job() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr,
               "gpt: rank %d called exit() before MPI_Finalize, in the middle of the job; "
               "aborting the job so no other rank waits on rank %d\n",
               rank, rank);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}
}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided_);
  } else {
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided_);
    owns_ = true;
    std::atexit(abort_if_exiting_mid_job);
  }
  if (provided_ < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr,
                 "gpt: this MPI provides thread level %d; the communicator's comm thread "
                 "needs MPI_THREAD_SERIALIZED or better (rebuild MPI with thread support)\n",
                 provided_);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

}  // namespace gpt::parallel
