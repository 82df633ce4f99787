// The one main() of every MPI test binary: MPI with thread support around GoogleTest.
// Only world rank 0 prints test progress; a failure on any rank still fails the job,
// because each rank returns its own result and mpirun reports the first non-zero one.
#include <gtest/gtest.h>

#include "parallel/communicator.h"

int main(int argc, char** argv) {
  gpt::parallel::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
