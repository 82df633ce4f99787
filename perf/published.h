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

// Predicts every row of every table (tables must outlive the result).
std::vector<TableCheck> validate(const std::vector<PublishedTable>& tables);

}  // namespace gpt::perf
