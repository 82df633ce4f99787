// The plan program end to end: its RESULT lines and one-line errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct PlanRun {
  int status;
  std::string output;
};

PlanRun run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  PlanRun r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

PlanRun run_plan(const std::string& args) { return run_command(std::string(PLAN_BIN) + " " + args); }

TEST(PlanCli, PrintsABreakdownAndAResultLine) {
  const PlanRun r = run_plan("--cluster.preset h100-sxm --model.preset gpt2-1.5B --cluster.gpus 8");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* key : {"RESULT plan {", "\"tflops_per_gpu\":", "\"mfu\":", "\"step_s\":", "\"memory_gib_per_gpu\":"})
    EXPECT_NE(r.output.find(key), std::string::npos) << key << "\n" << r.output;
}

// The RESULT line of a run, "" when there is none.
std::string result_line(const PlanRun& r) {
  const size_t a = r.output.find("RESULT plan ");
  return a == std::string::npos ? "" : r.output.substr(a, r.output.find('\n', a) - a);
}

TEST(PlanCli, ClusterFromJsonActsAsTheSameOverridesAndExplicitKeysWin) {
  const std::string path = testing::TempDir() + "plan_cli_calibration.json";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("{\"calibration\": {\"peak_tflops\": 0.1, \"gemm_efficiency\": 0.5, \"intra_gbps\": 0.3, "
             "\"intra_latency_us\": 250}}\n", f);
  std::fclose(f);
  const std::string base = "--cluster.preset local --model.preset tiny --cluster.gpus 2 --train.global_batch 0 ";
  const PlanRun by_file = run_plan(base + "--cluster.from_json " + path);
  const PlanRun by_keys = run_plan(base + "--cluster.peak_tflops 0.1 --cluster.gemm_efficiency 0.5 "
                                          "--cluster.intra_gbps 0.3 --cluster.intra_latency_us 250");
  ASSERT_EQ(by_file.status, 0) << by_file.output;
  EXPECT_NE(result_line(by_file), "");
  EXPECT_EQ(result_line(by_file), result_line(by_keys));
  EXPECT_NE(result_line(by_file), result_line(run_plan(base)));  // the preset's placeholders differ
  const PlanRun both = run_plan(base + "--cluster.from_json " + path + " --cluster.peak_tflops 0.2");
  const PlanRun keys2 = run_plan(base + "--cluster.peak_tflops 0.2 --cluster.gemm_efficiency 0.5 "
                                        "--cluster.intra_gbps 0.3 --cluster.intra_latency_us 250");
  EXPECT_EQ(result_line(both), result_line(keys2));
  const PlanRun missing = run_plan(base + "--cluster.from_json /nonexistent/cal.json");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("config key 'cluster.from_json': cannot read"), std::string::npos) << missing.output;
}

TEST(PlanCli, SearchAndValidate) {
  const PlanRun s = run_plan("--cluster.preset h100-sxm --model.preset gpt2-1.5B --cluster.gpus 8 --search");
  EXPECT_EQ(s.status, 0) << s.output;
  EXPECT_NE(s.output.find("limited by"), std::string::npos) << s.output;
  EXPECT_NE(s.output.find("RESULT plan {"), std::string::npos) << s.output;
  const PlanRun v = run_plan("--validate");
  EXPECT_EQ(v.status, 0) << v.output;
  EXPECT_NE(v.output.find("held out"), std::string::npos);
  EXPECT_NE(v.output.find("RESULT plan_validate {"), std::string::npos) << v.output;
}

// The total after '=' on the first line containing `marker`.
std::string total_after(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return "";
  const size_t eq = text.find("= ", at), end = text.find(" GiB", eq);
  return text.substr(eq + 2, end - eq - 2);
}

// One rank of pretrain on this machine: plan's memory per device is pretrain's own plan.
TEST(PlanCli, MemoryEqualsPretrainsPlan) {
  const std::string model = "--model.preset gpt2-124M --train.seq_len 512 --train.micro_batch 4 --train.dtype bf16";
  for (const char* mode : {"none", "selective", "full"}) {
    const PlanRun pre = run_command(std::string(PRETRAIN_BIN) + " " + model + " --train.plan_only true");
    ASSERT_EQ(pre.status, 0) << pre.output;
    const PlanRun plan = run_plan("--cluster.preset local --cluster.gpus 1 --train.global_batch 4 " + model +
                                  " --train.recompute " + mode);
    ASSERT_EQ(plan.status, 0) << plan.output;
    const std::string want = total_after(pre.output, std::string("recompute ") + mode + " ");
    EXPECT_FALSE(want.empty()) << pre.output;
    EXPECT_EQ(total_after(plan.output, "memory per device"), want) << mode << "\n" << pre.output << plan.output;
  }
}

// The integer after `key` in `text` (e.g. "\"memory_bytes_per_gpu\":" or "recompute full "
// ... "("), or -1 when absent.
long long bytes_after(const std::string& text, const std::string& key, const std::string& before = "") {
  size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  at += key.size();
  if (!before.empty()) {
    at = text.find(before, at);
    if (at == std::string::npos) return -1;
    at += before.size();
  }
  return std::atoll(text.c_str() + at);
}

// Layouts pretrain runs, both families, on a small model: plan's memory per device, in
// bytes, equals what pretrain --train.plan_only prints for the rank that holds most,
// for each recompute mode. One process plans any layout (dp = 1 here; the unit tests
// cover ZeRO-1's shards).
TEST(PlanCli, MemoryEqualsPretrainsPlanForEveryLayout) {
  struct Case {
    const char* model;  // the same keys for both programs
    int tp, pp, v;
    bool sp;
    const char* schedule;
    const char* dtype;
  };
  const char* gpt2 = "--model.preset tiny --model.n_layer 4 --train.seq_len 64";
  const char* llama = "--model.preset llama-tiny --model.vocab_size 1000 --train.seq_len 64";
  const Case cases[] = {
      {gpt2, 1, 1, 1, false, "1f1b", "fp32"},        {gpt2, 2, 1, 1, false, "1f1b", "fp32"},
      {gpt2, 2, 1, 1, true, "1f1b", "fp32"},         {gpt2, 2, 1, 1, true, "1f1b", "bf16"},
      {gpt2, 1, 2, 1, false, "gpipe", "fp32"},       {gpt2, 1, 2, 1, false, "1f1b", "fp32"},
      {gpt2, 1, 2, 2, false, "interleaved", "fp32"}, {gpt2, 1, 2, 1, false, "zb-h1", "fp32"},
      {gpt2, 2, 2, 1, true, "1f1b", "bf16"},         {gpt2, 1, 4, 1, false, "1f1b", "fp32"},
      {gpt2, 1, 2, 1, false, "1f1b --parallel.layers_per_stage 1,3", "fp32"},
      {llama, 1, 1, 1, false, "1f1b", "fp32"},       {llama, 2, 1, 1, false, "1f1b", "bf16"},
      {llama, 2, 1, 1, true, "1f1b", "fp32"},        {llama, 2, 2, 1, true, "zb-h1", "bf16"},
      {llama, 1, 2, 1, false, "gpipe", "fp32"},      {llama, 2, 2, 2, false, "interleaved", "fp32"},
      {llama, 1, 2, 1, false, "zb-h1", "fp32"},
  };
  for (const Case& c : cases) {
    const std::string layout = std::string(c.model) + " --train.micro_batch 2 --train.dtype " + c.dtype +
                               " --parallel.tp " + std::to_string(c.tp) + " --parallel.pp " + std::to_string(c.pp) +
                               " --parallel.virtual_stages " + std::to_string(c.v);
    const std::string what = layout + " sp " + std::to_string(c.sp) + " " + c.schedule;
    const PlanRun pre = run_command(std::string(PRETRAIN_BIN) + " " + layout + " --parallel.sp " +
                                    (c.sp ? "true" : "false") + " --parallel.schedule " + c.schedule +
                                    " --train.grad_accum 4 --train.plan_only true");
    ASSERT_EQ(pre.status, 0) << what << "\n" << pre.output;
    for (const char* mode : {"none", "selective", "full"}) {
      if (std::string(c.schedule) == "zb-h1" && std::string(mode) != "none") continue;  // refused by both
      const long long want = bytes_after(pre.output, std::string("recompute ") + mode + " ", "MiB (");
      ASSERT_GT(want, 0) << what << "\n" << pre.output;
      const PlanRun plan = run_plan("--cluster.preset local --parallel.dp 1 --train.global_batch 8 " + layout +
                                    " --parallel.sequence_parallel " + (c.sp ? "true" : "false") +
                                    " --parallel.schedule " + c.schedule + " --train.recompute " + mode);
      ASSERT_EQ(plan.status, 0) << what << "\n" << plan.output;
      EXPECT_EQ(bytes_after(plan.output, "\"memory_bytes_per_gpu\":"), want)
          << what << " recompute " << mode << "\n" << pre.output << plan.output;
    }
  }
}

TEST(PlanCli, BadLayoutIsOneLineNamingTheKey) {
  const PlanRun r = run_plan("--model.preset gpt2-1.5B --parallel.tp 8 --cluster.gpus 8");  // 25 heads
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
  EXPECT_NE(r.output.find("'parallel.tp'"), std::string::npos) << r.output;
  const PlanRun u = run_plan("--cluster.preset tpu");
  EXPECT_NE(u.status, 0);
  EXPECT_NE(u.output.find("'cluster.preset'"), std::string::npos) << u.output;
}

}  // namespace
