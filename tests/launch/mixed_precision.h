// Shared by the CPU and GPU mixed-precision tests: a bf16 run against an fp32 run of
// the same model, seed and data, through the pretrain program.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "run_pretrain.h"

namespace gpt::test {

// bf16 tracks fp32 within `tolerance` (relative) at every 10th step, and two bf16
// runs with the same seed give bit-identical losses.
inline void expect_bf16_tracks_fp32(const std::string& args, int steps, double tolerance) {
  std::string f = fresh_dir("mp_fp32"), b1 = fresh_dir("mp_bf16_a"), b2 = fresh_dir("mp_bf16_b");
  const std::string common = args + " --train.steps " + std::to_string(steps);
  RunResult r = run_pretrain(common + " --train.dtype fp32 --run.dir " + f);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_pretrain(common + " --train.dtype bf16 --run.dir " + b1);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_pretrain(common + " --train.dtype bf16 --run.dir " + b2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lf = train_losses(f), lb = train_losses(b1);
  ASSERT_EQ(lf.size(), size_t(steps));
  ASSERT_EQ(lb.size(), size_t(steps));
  for (int s = 9; s < steps; s += 10) {
    double a = std::stod(lb[size_t(s)]), want = std::stod(lf[size_t(s)]);
    EXPECT_LE(std::abs(a - want) / want, tolerance) << "step " << s + 1 << ": bf16 " << a << " vs fp32 " << want;
  }
  // bf16 really ran: its losses are not the fp32 ones bit for bit.
  EXPECT_NE(lb, lf);
  EXPECT_EQ(train_losses(b2), lb);
}

}  // namespace gpt::test
