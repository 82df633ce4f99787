// pretrain: trains a GPT-2-family model from a config file, on one process or many
// (mpirun -np N pretrain ...: data parallelism over the ranks). Every failure the user
// can cause ends as one line on stderr naming the rank (when there are several) and a
// non-zero exit; with several ranks the job is aborted so no rank waits forever.
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <memory>

#include "core/error.h"
#include "core/ops.h"
#include "launch/config.h"
#include "launch/memory_plans.h"
#include "launch/trainer.h"
#include "parallel/communicator.h"

int main(int argc, char** argv) {
  gpt::parallel::MpiSession mpi(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  try {
    gpt::TrainConfig cfg;
    if (!gpt::parse_config(argc, argv, cfg)) return 0;
    if (cfg.plan_only) {  // before any device is touched: this answers on a login node too
      if (rank == 0) std::fputs(gpt::describe_memory_plans(cfg, world).c_str(), stdout);
      return 0;
    }
    std::unique_ptr<gpt::parallel::Communicator> comm;
    if (cfg.device == "cuda") {
      // One GPU per rank, chosen by the rank's index among the ranks of its node.
      MPI_Comm node;
      int local_rank = 0;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
      MPI_Comm_rank(node, &local_rank);
      MPI_Comm_free(&node);
      gpt::ops_for(gpt::Device::CUDA).select_device(local_rank);
#if defined(GPT_WITH_NCCL)
      comm = gpt::parallel::make_nccl_communicator(MPI_COMM_WORLD, {cfg.comm_timeout_s});
#endif
    }
    if (!comm) comm = gpt::parallel::make_mpi_communicator(MPI_COMM_WORLD, {cfg.comm_timeout_s});
    gpt::Trainer trainer(cfg, *comm);
    try {
      trainer.run();
    } catch (const std::exception& e) {
      // With peers, abort here, before the trainer's destructors wait on collectives
      // the peers will never finish; alone, unwinding normally is fine.
      if (world > 1) {
        std::fprintf(stderr, "pretrain: rank %d: error: %s\n", rank, e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      throw;
    }
    return 0;
  } catch (const std::exception& e) {
    if (world > 1) {
      std::fprintf(stderr, "pretrain: rank %d: error: %s\n", rank, e.what());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    std::fprintf(stderr, "pretrain: error: %s\n", e.what());
  }
  return 1;
}
