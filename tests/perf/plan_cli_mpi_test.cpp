// plan against pretrain --train.plan_only run on the job's ranks (mpirun): ZeRO-1 shards
// the optimizer over the data-parallel ranks, world / (tp x pp), in both.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

std::string output_of(const std::string& command, int* status) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

// The integer after `key`, then after `then` when given; -1 when absent.
long long number_after(const std::string& text, const std::string& key, const std::string& then = "") {
  size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  at += key.size();
  if (!then.empty()) {
    at = text.find(then, at);
    if (at == std::string::npos) return -1;
    at += then.size();
  }
  return std::atoll(text.c_str() + at);
}

TEST(PlanCliMpi, Zero1MemoryEqualsPretrainsPlanOnTheJobsRanks) {
  const std::string model = "--model.preset tiny --model.n_layer 4 --train.seq_len 64 --train.micro_batch 2";
  struct Case {
    int world, tp, pp;
  };
  for (const Case c : {Case{2, 1, 1}, Case{4, 1, 2}, Case{4, 2, 1}}) {
    const std::string layout = model + " --parallel.tp " + std::to_string(c.tp) + " --parallel.pp " +
                               std::to_string(c.pp);
    int status = 0;
    const std::string pre = output_of(std::string("bash ") + MPIRUN_LOCAL + " -np " + std::to_string(c.world) + " " +
                                          PRETRAIN_BIN + " " + layout +
                                          " --parallel.zero1 true --train.grad_accum 4 --train.plan_only true",
                                      &status);
    ASSERT_EQ(status, 0) << pre;
    const int dp = c.world / (c.tp * c.pp);
    EXPECT_NE(pre.find("optimizer sharded over " + std::to_string(dp) + " ranks"), std::string::npos) << pre;
    const long long want = number_after(pre, "recompute none ", "MiB (");
    ASSERT_GT(want, 0) << pre;
    const std::string plan = output_of(std::string(PLAN_BIN) + " --cluster.preset local --train.dtype fp32 " + layout +
                                           " --parallel.sequence_parallel false --parallel.zero1 true --parallel.dp " +
                                           std::to_string(dp) + " --train.global_batch " + std::to_string(8 * dp),
                                       &status);
    ASSERT_EQ(status, 0) << plan;
    EXPECT_EQ(number_after(plan, "\"memory_bytes_per_gpu\":"), want) << pre << plan;
  }
}

}  // namespace
