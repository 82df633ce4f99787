// Every collective of the MPI communicator against hand-computed values, on 2 and 4
// ranks (the same binary under both -np), plus the traffic counters' formulas.
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/communicator.h"

namespace gpt::parallel {
namespace {

class CommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{60.0});
    world = comm->world_group();
    n = comm->world_size();
    r = comm->world_rank();
  }
  std::unique_ptr<Communicator> comm;
  Group world;
  int n = 0, r = 0;
};

Tensor filled(int64_t count, float value) {
  Tensor t = empty({count});
  for (int64_t i = 0; i < count; ++i) t.f32()[i] = value;
  return t;
}

TEST_F(CommunicatorTest, AllreduceSumAndAvg) {
  Tensor t = empty({5}), a = empty({5});
  for (int i = 0; i < 5; ++i) t.f32()[i] = a.f32()[i] = float(r * 10 + i);
  CommHandle hs = comm->allreduce(t, world);
  CommHandle ha = comm->allreduce_avg(a, world);
  ha.wait();
  hs.wait();
  for (int i = 0; i < 5; ++i) {
    const float sum = 10.f * float(n * (n - 1) / 2) + float(n * i);
    EXPECT_FLOAT_EQ(t.f32()[i], sum);
    EXPECT_FLOAT_EQ(a.f32()[i], sum / float(n));
  }
  Tensor ints = empty({1}, DType::I32);
  ints.i32()[0] = r + 1;
  comm->allreduce(ints, world).wait();
  EXPECT_EQ(ints.i32()[0], n * (n + 1) / 2);
}

TEST_F(CommunicatorTest, ReduceScatterUnevenCounts) {
  std::vector<int64_t> counts;
  for (int i = 0; i < n; ++i) counts.push_back(i + 1);  // 1, 2, 3, ...
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  Tensor in = empty({total}), out = filled(counts[size_t(r)], -1.f);
  for (int64_t j = 0; j < total; ++j) in.f32()[j] = float(r + j);
  comm->reduce_scatter(in, out, counts, world).wait();
  const int64_t first = r * (r + 1) / 2;  // where chunk r starts
  for (int64_t k = 0; k < counts[size_t(r)]; ++k)
    EXPECT_FLOAT_EQ(out.f32()[k], float(n * (n - 1) / 2 + n * (first + k)));
}

TEST_F(CommunicatorTest, AllgatherUnevenCountsInPlace) {
  std::vector<int64_t> counts;
  for (int i = 0; i < n; ++i) counts.push_back(n - i);  // n, n-1, ..., 1
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  Tensor buf = filled(total, -1.f);
  int64_t off = 0;
  for (int i = 0; i < r; ++i) off += counts[size_t(i)];
  for (int64_t k = 0; k < counts[size_t(r)]; ++k) buf.f32()[off + k] = float(100 * r + k);
  comm->allgather(buf, counts, world).wait();
  off = 0;
  for (int i = 0; i < n; ++i)
    for (int64_t k = 0; k < counts[size_t(i)]; ++k) EXPECT_FLOAT_EQ(buf.f32()[off++], float(100 * i + k));
}

TEST_F(CommunicatorTest, AllToAllVariableCountsWithEmptyChunks) {
  // Rank r sends (r + j) % 3 elements to rank j: uneven, and zero for some pairs.
  std::vector<int64_t> send, recv;
  for (int j = 0; j < n; ++j) {
    send.push_back((r + j) % 3);
    recv.push_back((j + r) % 3);
  }
  const int64_t ns = std::accumulate(send.begin(), send.end(), int64_t(0));
  const int64_t nr = std::accumulate(recv.begin(), recv.end(), int64_t(0));
  Tensor in = empty({std::max<int64_t>(ns, 1)}), out = filled(std::max<int64_t>(nr, 1), -1.f);
  int64_t off = 0;
  for (int j = 0; j < n; ++j)
    for (int64_t k = 0; k < send[size_t(j)]; ++k) in.f32()[off++] = float(1000 * r + 10 * j + k);
  comm->all_to_all(in, send, out, recv, world).wait();
  off = 0;
  for (int j = 0; j < n; ++j)
    for (int64_t k = 0; k < recv[size_t(j)]; ++k)
      EXPECT_FLOAT_EQ(out.f32()[off++], float(1000 * j + 10 * r + k)) << "from rank " << j;
}

TEST_F(CommunicatorTest, SendRecvRing) {
  Tensor out = filled(3, float(r)), in = filled(3, -1.f);
  CommHandle hr = comm->recv(in, (r + n - 1) % n, world, /*tag=*/7);
  CommHandle hs = comm->send(out, (r + 1) % n, world, /*tag=*/7);
  hs.wait();
  hr.wait();
  for (int k = 0; k < 3; ++k) EXPECT_FLOAT_EQ(in.f32()[k], float((r + n - 1) % n));
}

TEST_F(CommunicatorTest, BroadcastFromLastRankAndBarrier) {
  Tensor t = filled(4, r == n - 1 ? 42.f : 0.f);
  comm->broadcast(t, n - 1, world).wait();
  for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(t.f32()[k], 42.f);
  comm->barrier(world).wait();
}

TEST_F(CommunicatorTest, SubgroupsReduceIndependently) {
  // Pairs {0,1}, {2,3}, ...: each pair's sum, with the pair's own name in the counters.
  std::vector<std::vector<int>> pairs;
  for (int i = 0; i < n; i += 2) pairs.push_back({i, i + 1});
  Group pair = comm->make_group("pair", pairs);
  EXPECT_EQ(pair.size(), 2);
  EXPECT_EQ(pair.rank, r % 2);
  Tensor t = filled(2, float(r));
  comm->allreduce(t, pair).wait();
  EXPECT_FLOAT_EQ(t.f32()[0], float(2 * (r / 2 * 2) + 1));
  EXPECT_EQ(comm->traffic().get("pair", "allreduce").calls, 1);
  EXPECT_DOUBLE_EQ(comm->traffic().get("pair", "allreduce").bytes, 8.0);  // 2*(1/2)*8 bytes
}

TEST_F(CommunicatorTest, ManyInFlightCompleteInAnyWaitOrder) {
  std::vector<Tensor> ts;
  std::vector<CommHandle> hs;
  for (int i = 0; i < 8; ++i) ts.push_back(filled(1000, float(i + r)));
  for (int i = 0; i < 8; ++i) hs.push_back(comm->allreduce(ts[size_t(i)], world));
  for (int i = 7; i >= 0; --i) hs[size_t(i)].wait();
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(ts[size_t(i)].f32()[999], float(n * i + n * (n - 1) / 2));
}

TEST_F(CommunicatorTest, TrafficCountersFollowRingFormulas) {
  const double S = 4.0 * 1200;  // bytes of a 1200-float tensor
  Tensor t = filled(1200, 1.f);
  comm->allreduce(t, world).wait();
  EXPECT_DOUBLE_EQ(comm->traffic().get("world", "allreduce").bytes, 2.0 * (n - 1) / n * S);

  std::vector<int64_t> even(size_t(n), 1200 / n);
  Tensor out = empty({1200 / n});
  comm->reduce_scatter(t, out, even, world).wait();
  EXPECT_DOUBLE_EQ(comm->traffic().get("world", "reduce_scatter").bytes, double(n - 1) / n * S);
  comm->allgather(t, even, world).wait();
  EXPECT_DOUBLE_EQ(comm->traffic().get("world", "allgather").bytes, double(n - 1) / n * S);

  comm->broadcast(t, 0, world).wait();  // chain 0 -> 1 -> ... -> n-1: the last sends nothing
  EXPECT_DOUBLE_EQ(comm->traffic().get("world", "broadcast").bytes, r == n - 1 ? 0.0 : S);
  comm->barrier(world).wait();
  EXPECT_EQ(comm->traffic().get("world", "barrier").calls, 1);
  EXPECT_DOUBLE_EQ(comm->traffic().get("world", "barrier").bytes, 0.0);
}

TEST_F(CommunicatorTest, RejectsBadCountsWithTheGroupName) {
  Tensor t = filled(10, 0.f);
  std::vector<int64_t> wrong(size_t(n), 1);  // sums to n, not 10
  try {
    comm->allgather(t, wrong, world);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'world'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gpt::parallel
