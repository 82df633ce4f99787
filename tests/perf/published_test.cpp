// The model predicts published throughputs within 15% (a prediction check: the
// constants were calibrated on a few marked rows, the others are held out), and the
// planner does at least as well as a published layout.
#include <gtest/gtest.h>

#include <cmath>

#include "perf/report.h"

namespace gpt::perf {
namespace {

TEST(PerfPublished, EveryRowWithin15Percent) {
  const std::vector<PublishedTable> tables = published_tables();
  const std::vector<TableCheck> checks = validate(tables);
  ASSERT_EQ(checks.size(), 2u);
  for (const TableCheck& tc : checks) {
    int held_out = 0;
    for (const RowCheck& rc : tc.rows) {
      EXPECT_LE(std::fabs(rc.error), 0.15) << tc.table->name << " " << rc.row->name << ": predicted "
                                           << rc.predicted << " vs " << rc.row->tflops_per_gpu;
      held_out += !rc.row->calibration;
      // The published runs ran: their layouts fit in the device's memory.
      EXPECT_TRUE(rc.prediction.fits) << tc.table->name << " " << rc.row->name << ": "
                                      << rc.prediction.memory.total() / (1 << 30) << " GiB";
    }
    EXPECT_GE(2 * held_out, int(tc.rows.size())) << tc.table->name << ": at least half the rows held out";
    EXPECT_LE(tc.max_abs_error, 0.15) << tc.table->name;
  }
}

// The presets' constants are what calibrating on the marked rows alone gives.
TEST(PerfPublished, PresetConstantsComeFromTheCalibrationRows) {
  const std::vector<PublishedTable> tables = published_tables();
  const Calibration cal = calibrate(tables);
  ASSERT_EQ(cal.constants.gemm_efficiency.size(), tables.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    const Cluster c = cluster_preset(tables[i].cluster);
    EXPECT_NEAR(c.gemm_efficiency, cal.constants.gemm_efficiency[i], 1e-9) << tables[i].cluster;
    EXPECT_NEAR(c.memory_traffic, cal.constants.memory_traffic, 1e-9);
  }
}

TEST(PerfPublished, PlannerBeatsOrMatchesMegatronOn145B) {
  const PlannerSanity s = planner_sanity();
  EXPECT_LE(s.best_145b.prediction.step, s.published.step);
  EXPECT_TRUE(s.best_145b.prediction.fits);
  EXPECT_LE(s.best_145b.prediction.memory.total(), 80e9);
  EXPECT_LE(s.best_145b_full.prediction.step, s.published.step);
  EXPECT_TRUE(s.best_gpt2.prediction.fits);
  EXPECT_GT(s.best_gpt2.prediction.mfu, 0.0);
  EXPECT_LT(s.best_gpt2.prediction.mfu, 1.0);
  EXPECT_EQ(s.best_gpt2.layout.gpus(), 8);
}

TEST(PerfPlanner, SearchReturnsFittingLayoutsFastestFirst) {
  ModelShape m = ModelShape::from_gpt(gpt_preset("gpt2-1.5B"), 1024);
  Cluster c = cluster_preset("a100-80gb");
  c.gpus = 16;
  Layout base;
  base.global_batch = 64;
  const std::vector<Candidate> best = search_layouts(m, c, base, 5);
  ASSERT_FALSE(best.empty());
  for (size_t i = 0; i < best.size(); ++i) {
    EXPECT_TRUE(best[i].prediction.fits);
    EXPECT_EQ(best[i].layout.gpus(), 16);
    EXPECT_EQ(c.gpus_per_node % best[i].layout.tp, 0);
    if (i > 0) {
      EXPECT_LE(best[i - 1].prediction.step, best[i].prediction.step);
    }
  }
  // A device too small for any layout: nothing comes back.
  c.memory_bytes = 1e6;
  EXPECT_TRUE(search_layouts(m, c, base, 5).empty());
}

}  // namespace
}  // namespace gpt::perf
