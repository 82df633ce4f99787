// Fault-injection worker for fault_test.sh: data-parallel training where rank
// GPT_FAULT_RANK, at step 2 between forward and backward, calls exit()
// (GPT_FAULT_MODE=exit), is killed by SIGKILL (kill) or stops responding (hang).
// The other ranks are then inside a bucket all-reduce; the job must end, not hang.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "parallel/communicator.h"
#include "tests/parallel/dp_test_support.h"

int main(int argc, char** argv) {
  using namespace gpt::parallel;
  MpiSession mpi(&argc, &argv);
  const char* mode_env = std::getenv("GPT_FAULT_MODE");
  const char* rank_env = std::getenv("GPT_FAULT_RANK");
  const char* timeout_env = std::getenv("GPT_COMM_TIMEOUT_S");
  const std::string mode = mode_env ? mode_env : "none";
  const int fault_rank = rank_env ? std::atoi(rank_env) : -1;
  CommConfig cfg;
  cfg.timeout_s = timeout_env ? std::atof(timeout_env) : 5.0;
  {
    auto comm = make_mpi_communicator(MPI_COMM_WORLD, cfg);
    Group world = comm->world_group();
    testing::TinyTrainer t(*comm, world, /*accum=*/1, DPConfig{false, true, 0.05});
    t.before_backward = [&](int64_t step, int) {
      if (comm->world_rank() != fault_rank || step != 2) return;
      if (mode == "exit") std::exit(7);  // leaves mid-step through exit()
      if (mode == "kill") std::raise(SIGKILL);  // dies mid-step: no handler runs at all
      if (mode == "hang")
        for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    };
    for (int s = 0; s < 5; ++s) {
      float loss = t.step(s);
      if (comm->world_rank() == 0) std::printf("step %d loss %.6f\n", s, loss);
      std::fflush(stdout);
    }
  }
  return 0;
}
