// Published training throughputs the performance model is checked against, and the
// check itself (plan --validate, tests/perf/published_test.cpp).
#pragma once
#include <string>
#include <vector>

#include "perf/perf_model.h"

namespace gpt::perf {

struct PublishedRow {
  const char* name;  // "145.6B"
  int heads, hidden, layers, tp, pp, gpus, batch, micro_batch, virtual_stages;
  double tflops_per_gpu;  // as published
  bool calibration;       // used to calibrate the cluster's gemm_efficiency (else held out)
};

struct PublishedTable {
  std::string name, source;
  std::string assumptions;  // what the source does not state and we chose (printed)
  std::string cluster;  // cluster preset
  int seq_len, vocab;
  bool paper_flops;     // Narayanan et al. eq. (3) (recomputation counted), else model FLOPs
  Layout settings;      // recompute, SP, overlap, ... as the source ran them
  bool tied_head;
  std::vector<PublishedRow> rows;
};

std::vector<PublishedTable> published_tables();

// The model shape, cluster and layout of one published row.
ModelShape row_model(const PublishedTable& t, const PublishedRow& r);
Cluster row_cluster(const PublishedTable& t, const PublishedRow& r);
Layout row_layout(const PublishedTable& t, const PublishedRow& r);

struct RowCheck {
  const PublishedRow* row;
  double predicted, error;  // TFLOP/s per GPU counted as the source counts; (pred − pub)/pub
  Prediction prediction;
};
struct TableCheck {
  const PublishedTable* table;
  std::vector<RowCheck> rows;
  double max_abs_error = 0, max_abs_error_held_out = 0;
};

// Predicts every row of every table (tables must outlive the result). overrides, when
// given, replace each table's cluster constants (gemm_efficiency per table, in order,
// and memory_traffic): calibrate() uses it.
struct Constants {
  std::vector<double> gemm_efficiency;  // one per table
  double memory_traffic = 0;
};
std::vector<TableCheck> validate(const std::vector<PublishedTable>& tables, const Constants* overrides = nullptr);

// Reruns the calibration the presets' constants come from: a grid over gemm_efficiency
// (0.30..0.89 by 0.01, one per table's accelerator) and the shared memory_traffic
// (0..2.9 by 0.1) minimising the sum of squared relative errors on the rows marked
// `calibration` only (the other rows are held out).
struct Calibration {
  Constants constants;
  double max_abs_error_calibration_rows = 0;
};
Calibration calibrate(const std::vector<PublishedTable>& tables);

}  // namespace gpt::perf
