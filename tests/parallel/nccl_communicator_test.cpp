// The NCCL communicator on device tensors, one rank per GPU (-np = number of GPUs).
// Needs the core CUDA backend and a GPU; skips otherwise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cuda_runtime.h>

#include "core/ops.h"
#include "parallel/communicator.h"

namespace gpt::parallel {
namespace {

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0 ||
        !device_available(Device::CUDA))
      GTEST_SKIP() << "no GPU or no CUDA backend";
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    cudaSetDevice((local ? std::atoi(local) : 0) % devices);
    comm = make_nccl_communicator(MPI_COMM_WORLD, CommConfig{60.0});
    world = comm->world_group();
  }
  std::unique_ptr<Communicator> comm;
  Group world;
};

TEST_F(NcclCommunicatorTest, AllreduceAllgatherAndBroadcastOnDevice) {
  const int n = comm->world_size(), r = comm->world_rank();
  std::vector<float> host(6);
  for (int i = 0; i < 6; ++i) host[size_t(i)] = float(r * 10 + i);
  Tensor t = empty({6}, DType::F32, Device::CUDA);
  from_host_f32(t, host.data());
  comm->allreduce(t, world).wait();
  std::vector<float> got = to_host_f32(t);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(got[size_t(i)], 10.f * float(n * (n - 1) / 2) + float(n * i));

  std::vector<int64_t> counts(size_t(n), 2);
  Tensor buf = zeros({2 * n}, DType::F32, Device::CUDA);
  std::vector<float> mine = {float(r), float(r) + 0.5f};
  Tensor slot = buf.slice(2 * r, {2});
  from_host_f32(slot, mine.data());
  comm->allgather(buf, counts, world).wait();
  got = to_host_f32(buf);
  for (int i = 0; i < n; ++i) EXPECT_FLOAT_EQ(got[size_t(2 * i + 1)], float(i) + 0.5f);

  comm->broadcast(t, 0, world).wait();
  comm->barrier(world).wait();
  EXPECT_EQ(comm->traffic().get("world", "allreduce").calls, 1);
}

}  // namespace
}  // namespace gpt::parallel
