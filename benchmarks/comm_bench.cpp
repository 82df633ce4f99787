// Communication benchmark (not a test), in the spirit of nccl-tests: all-reduce,
// reduce-scatter, all-gather, all-to-all and send/recv through the Communicator, fp32
// messages from --min-kb to --max-mb, MPI on host memory (and NCCL on device memory when
// built with NCCL and a GPU is present). Run:
//   bash launch/mpirun_local.sh -np 2 build/benchmarks/comm_bench [--max-mb 256] [--json out.json]
//
// Per size: time per call (mean over ranks of each rank's mean over --iters calls, each
// call waited before the next), algbw = message bytes / time and busbw = algbw × factor
// (perf/calibration.h: 2(n−1)/n all-reduce, (n−1)/n reduce-scatter/all-gather/all-to-all,
// 1 send/recv), so numbers compare across rank counts. The message is the whole buffer
// (every rank's chunks) for reduce-scatter, all-gather and all-to-all, as in nccl-tests.
// Each (operation, size) is checked once against the exact expected values before it is
// timed; a wrong result reports no bandwidth and the program exits 1.
// The all-reduce times are fitted to t = 2(n−1)·latency + bytes/bandwidth, and every
// operation's to its own line per size regime (perf::fit_collective), and written as a
// "calibration" object that `plan --cluster.from_json` reads. --refit FILE recomputes that
// object from a saved run's rows without measuring (and without MPI).
// Prints one final machine-readable line (RESULT comm_bench {json}) and writes JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <string>
#include <vector>

#include "core/checkpoint/json_lite.h"
#include "core/ops.h"
#include "parallel/communicator.h"
#include "perf/calibration.h"

using namespace gpt;
using namespace gpt::parallel;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  double min_kb = 1, max_mb = 64, target_mb = 512;  // target: bytes moved per measurement
  int max_iters = 200, min_iters = 3;
  std::string json = "comm_bench.json";
  std::string refit;  // a saved comm_bench JSON whose rows are refitted instead of measuring
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--min-kb") a.min_kb = std::atof(v.c_str());
    else if (k == "--max-mb") a.max_mb = std::atof(v.c_str());
    else if (k == "--target-mb") a.target_mb = std::atof(v.c_str());
    else if (k == "--max-iters") a.max_iters = std::atoi(v.c_str());
    else if (k == "--json") a.json = v;
    else if (k == "--refit") a.refit = v;
    else {
      std::fprintf(stderr, "comm_bench: unknown option %s (--min-kb --max-mb --target-mb --max-iters --json --refit)\n",
                   k.c_str());
      std::exit(2);
    }
  }
  if ((argc - 1) % 2) {
    std::fprintf(stderr, "comm_bench: option %s needs a value\n", argv[argc - 1]);
    std::exit(2);
  }
  return a;
}

// The value rank r puts at element i of the chunk it sends to rank j: small integers,
// so every sum is exact in fp32 and a misplaced chunk or element shows.
float pattern(int r, int j, int64_t i) { return float(100 * r + j + i % 7); }

struct Row {
  std::string op;
  double bytes = 0, seconds = 0, algbw = 0, busbw = 0;
  bool correct = false;
};

// One (operation, size) case: `fill` prepares the inputs, `call` issues one operation and
// returns its handle, `check` compares the outputs with the expected values.
struct Case {
  std::function<void()> fill;
  std::function<CommHandle()> call;
  std::function<bool()> check;
};

class Bench {
 public:
  Bench(Communicator& comm, Device dev, const Args& a) : comm_(comm), dev_(dev), a_(a), world_(comm.world_group()) {}

  std::vector<Row> run_all() {
    std::vector<Row> rows;
    const int n = comm_.world_size();
    for (const char* op : {"allreduce", "reduce_scatter", "allgather", "all_to_all", "sendrecv"}) {
      for (double bytes = a_.min_kb * 1024; bytes <= a_.max_mb * 1024 * 1024 + 1; bytes *= 2) {
        // Elements: a multiple of n, so every rank's chunk is equal.
        const int64_t count = std::max<int64_t>(n, int64_t(bytes / 4) / n * n);
        rows.push_back(measure(op, count));
        report(rows.back());
      }
    }
    return rows;
  }

 private:
  Tensor make(int64_t count) { return empty({count}, DType::F32, dev_); }
  void put(Tensor& t, const std::vector<float>& v) { from_host_f32(t, v.data()); }

  Case make_case(const std::string& op, int64_t count) {
    const int n = comm_.world_size(), r = comm_.world_rank();
    const int64_t chunk = count / n;
    const std::vector<int64_t> counts(size_t(n), chunk);
    auto expect = [](const std::vector<float>& got, const std::function<float(int64_t)>& want) {
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != want(int64_t(i))) return false;
      return true;
    };
    Case c;
    if (op == "allreduce") {
      auto buf = std::make_shared<Tensor>(make(count));
      c.fill = [=] {
        std::vector<float> v(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) v[size_t(i)] = pattern(r, 0, i);
        put(*buf, v);
      };
      c.call = [=] { return comm_.allreduce(*buf, world_); };
      c.check = [=] {
        return expect(to_host_f32(*buf), [&](int64_t i) {
          float s = 0;
          for (int q = 0; q < n; ++q) s += pattern(q, 0, i);
          return s;
        });
      };
    } else if (op == "reduce_scatter") {
      auto in = std::make_shared<Tensor>(make(count)), out = std::make_shared<Tensor>(make(chunk));
      c.fill = [=] {
        std::vector<float> v(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) v[size_t(i)] = pattern(r, int(i / chunk), i % chunk);
        put(*in, v);
      };
      c.call = [=] { return comm_.reduce_scatter(*in, *out, counts, world_); };
      c.check = [=] {
        return expect(to_host_f32(*out), [&](int64_t i) {
          float s = 0;
          for (int q = 0; q < n; ++q) s += pattern(q, r, i);
          return s;
        });
      };
    } else if (op == "allgather") {
      auto buf = std::make_shared<Tensor>(make(count));
      c.fill = [=] {
        std::vector<float> v(static_cast<size_t>(count), -1.f);  // other ranks' chunks: must be overwritten
        for (int64_t i = 0; i < chunk; ++i) v[size_t(r * chunk + i)] = pattern(r, 0, i);
        put(*buf, v);
      };
      c.call = [=] { return comm_.allgather(*buf, counts, world_); };
      c.check = [=] { return expect(to_host_f32(*buf), [&](int64_t i) { return pattern(int(i / chunk), 0, i % chunk); }); };
    } else if (op == "all_to_all") {
      auto in = std::make_shared<Tensor>(make(count)), out = std::make_shared<Tensor>(make(count));
      c.fill = [=] {
        std::vector<float> v(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) v[size_t(i)] = pattern(r, int(i / chunk), i % chunk);
        put(*in, v);
      };
      c.call = [=] { return comm_.all_to_all(*in, counts, *out, counts, world_); };
      c.check = [=] { return expect(to_host_f32(*out), [&](int64_t i) { return pattern(int(i / chunk), r, i % chunk); }); };
    } else {  // sendrecv: a ring exchange, each rank sends to the next and receives from the previous
      auto s = std::make_shared<Tensor>(make(count)), d = std::make_shared<Tensor>(make(count));
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      c.fill = [=] {
        std::vector<float> v(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) v[size_t(i)] = pattern(r, next, i);
        put(*s, v);
      };
      c.call = [=] {
        CommHandle rh = comm_.recv(*d, prev, world_, 7);
        comm_.send(*s, next, world_, 7).wait();
        return rh;
      };
      c.check = [=] { return expect(to_host_f32(*d), [&](int64_t i) { return pattern(prev, r, i); }); };
    }
    return c;
  }

  // Sum over ranks of a host value (through the communicator, so no second MPI caller).
  double sum_over_ranks(double x) {
    Tensor t = empty({1}, DType::F32, dev_);
    const float v = float(x);
    from_host_f32(t, &v);
    comm_.allreduce(t, world_).wait();
    return double(to_host_f32(t)[0]);
  }

  Row measure(const std::string& op, int64_t count) {
    const int n = comm_.world_size();
    Row row;
    row.op = op;
    row.bytes = double(count) * 4;
    Case c = make_case(op, count);
    c.fill();
    c.call().wait();  // also the warm-up: buffers touched, connections made
    const bool ok = c.check();
    row.correct = sum_over_ranks(ok ? 0 : 1) == 0;  // every rank's check passed
    if (!row.correct) return row;
    const int iters = std::clamp(int(a_.target_mb * 1024 * 1024 / row.bytes), a_.min_iters, a_.max_iters);
    comm_.barrier(world_).wait();
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) c.call().wait();
    const double mine = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
    row.seconds = sum_over_ranks(mine) / n;
    row.algbw = row.bytes / row.seconds;
    row.busbw = row.algbw * perf::bus_bandwidth_factor(op, n);
    return row;
  }

  void report(const Row& w) {
    if (comm_.world_rank() != 0) return;
    if (!w.correct)
      std::printf("  %-15s %12.0f  WRONG RESULT: no bandwidth reported\n", w.op.c_str(), w.bytes);
    else
      std::printf("  %-15s %12.0f %12.2f %10.3f %10.3f\n", w.op.c_str(), w.bytes, w.seconds * 1e6, w.algbw / 1e9,
                  w.busbw / 1e9);
    std::fflush(stdout);
  }

  Communicator& comm_;
  Device dev_;
  const Args& a_;
  Group world_;
};

std::string rows_json(const std::vector<Row>& rows) {
  std::string o = "[";
  char b[256];
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& w = rows[i];
    if (w.correct)
      std::snprintf(b, sizeof b, "%s\n  {\"op\":\"%s\",\"bytes\":%.0f,\"time_us\":%.3f,\"algbw_gbps\":%.4f,\"busbw_gbps\":%.4f,\"correct\":true}",
                    i ? "," : "", w.op.c_str(), w.bytes, w.seconds * 1e6, w.algbw / 1e9, w.busbw / 1e9);
    else
      std::snprintf(b, sizeof b, "%s\n  {\"op\":\"%s\",\"bytes\":%.0f,\"correct\":false}", i ? "," : "", w.op.c_str(), w.bytes);
    o += b;
  }
  return o + "]";
}

// {"intra_gbps":..,"intra_latency_us":.., "OP_gbps":.., ...} (n > 1), else "": intra_* is
// one line through all the all-reduce rows (the figure every kind used before); OP_* is each
// kind's own fit, per regime (perf::fit_collective), which the model applies to that kind.
std::string calibration_json(const std::vector<Row>& rows, int n) {
  std::vector<double> x, t;
  for (const Row& w : rows)
    if (w.op == "allreduce" && w.correct) x.push_back(ring_allreduce_bytes(w.bytes, n)), t.push_back(w.seconds);
  if (n < 2 || x.size() < 2) return "";
  const perf::LatencyBandwidth f = perf::fit_latency_bandwidth(x, t, 2 * (n - 1));
  char b[256];
  std::snprintf(b, sizeof b, "{\"intra_gbps\":%.4f,\"intra_latency_us\":%.3f", f.bandwidth / 1e9, f.latency_s * 1e6);
  std::string o = b;
  for (const char* op : {"allreduce", "reduce_scatter", "allgather", "all_to_all", "sendrecv"}) {
    std::vector<double> bytes, secs;
    for (const Row& w : rows)
      if (w.op == op && w.correct) bytes.push_back(w.bytes), secs.push_back(w.seconds);
    if (bytes.size() < 2) continue;
    const perf::CollectiveCost c = perf::fit_collective(op, bytes, secs, n);
    std::snprintf(b, sizeof b, ",\"%s_gbps\":%.4f,\"%s_latency_us\":%.3f", op, c.bw / 1e9, op, c.latency * 1e6);
    o += b;
    if (c.large_from > 0) {
      std::snprintf(b, sizeof b, ",\"%s_large_from_mb\":%.6f,\"%s_large_gbps\":%.4f,\"%s_large_latency_us\":%.3f", op,
                    c.large_from / 1e6, op, c.large_bw / 1e9, op, c.large_latency * 1e6);
      o += b;
    }
  }
  return o + "}";
}

bool all_correct(const std::vector<Row>& rows);
std::string rows_json(const std::vector<Row>& rows);

// --refit FILE: the calibration recomputed from a saved run's rows (no MPI, nothing measured),
// the file rewritten to --json with it.
int refit(const std::string& in, const std::string& out) {
  std::ifstream f(in);
  if (!f) {
    std::fprintf(stderr, "comm_bench: cannot read --refit %s\n", in.c_str());
    return 2;
  }
  std::stringstream text;
  text << f.rdbuf();
  const json::Value doc = json::parse(text.str(), in);
  const json::Value* ranks = doc.find("ranks");
  const json::Value* mpi = doc.find("mpi");
  if (!ranks || !ranks->is_number() || !mpi || !mpi->is_array()) {
    std::fprintf(stderr, "comm_bench: %s has no \"ranks\" and \"mpi\" rows\n", in.c_str());
    return 2;
  }
  std::vector<Row> rows;
  for (const json::Value& r : mpi->items) {
    Row w;
    w.op = r.find("op")->text, w.bytes = r.find("bytes")->number;
    const json::Value* ok = r.find("correct");
    w.correct = ok && ok->kind == json::Value::Kind::Bool && ok->boolean;
    if (w.correct) w.seconds = r.find("time_us")->number * 1e-6, w.algbw = w.bytes / w.seconds;
    if (w.correct) w.busbw = w.algbw * perf::bus_bandwidth_factor(w.op, int(ranks->number));
    rows.push_back(w);
  }
  const std::string cal = calibration_json(rows, int(ranks->number));
  FILE* o = std::fopen(out.c_str(), "w");
  if (!o) {
    std::fprintf(stderr, "comm_bench: cannot write --json %s\n", out.c_str());
    return 1;
  }
  const json::Value* nccl = doc.find("nccl");
  std::fprintf(o, "{\"bench\":\"comm_bench\",\"ranks\":%d,\"dtype\":\"fp32\",\"all_correct\":%s,\n"
                  "\"nccl\":\"%s\",\n\"refit_from\":\"%s\",\n\"calibration\":%s,\n\"mpi\":%s,\n\"nccl_rows\":null}\n",
               int(ranks->number), all_correct(rows) ? "true" : "false", nccl && nccl->is_string() ? nccl->text.c_str() : "",
               in.c_str(), cal.empty() ? "null" : cal.c_str(), rows_json(rows).c_str());
  std::fclose(o);
  std::printf("comm_bench: refit %s -> %s: %s\n", in.c_str(), out.c_str(), cal.c_str());
  return 0;
}

bool all_correct(const std::vector<Row>& rows);

std::string peak_json(const std::vector<Row>& rows) {
  std::string o = "{";
  for (const char* op : {"allreduce", "reduce_scatter", "allgather", "all_to_all", "sendrecv"}) {
    double best = 0;
    for (const Row& w : rows)
      if (w.op == op && w.correct) best = std::max(best, w.busbw);
    char b[64];
    std::snprintf(b, sizeof b, "%s\"%s\":%.4f", o.size() > 1 ? "," : "", op, best / 1e9);
    o += b;
  }
  return o + "}";
}

bool all_correct(const std::vector<Row>& rows) {
  return std::all_of(rows.begin(), rows.end(), [](const Row& w) { return w.correct; });
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (!a.refit.empty()) return refit(a.refit, a.json);
  MpiSession mpi(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  auto header = [&](const char* backend) {
    if (rank == 0)
      std::printf("comm_bench: %s, %d ranks, fp32, %.0f KiB to %.0f MiB\n  %-15s %12s %12s %10s %10s\n", backend, n,
                  a.min_kb, a.max_mb, "op", "bytes", "time_us", "algbw_GB/s", "busbw_GB/s");
  };

  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{600.0});
  header("mpi (host memory)");
  const std::vector<Row> mpi_rows = Bench(*comm, Device::CPU, a).run_all();
  const std::string cal = calibration_json(mpi_rows, n);
  bool ok = all_correct(mpi_rows);
  comm.reset();

  std::string nccl_json = "null", nccl_peak = "null", nccl_note = "built without NCCL";
#if defined(GPT_WITH_NCCL)
  if (device_available(Device::CUDA)) {
    MPI_Comm node;
    int local_rank = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    ops_for(Device::CUDA).select_device(local_rank);
    auto nccl = make_nccl_communicator(MPI_COMM_WORLD, CommConfig{600.0});
    header("nccl (device memory)");
    const std::vector<Row> rows = Bench(*nccl, Device::CUDA, a).run_all();
    nccl_json = rows_json(rows), nccl_peak = peak_json(rows), nccl_note = "ran";
    ok = ok && all_correct(rows);
  } else {
    nccl_note = "no GPU";
  }
#endif
  if (rank == 0) {
    std::printf("nccl: %s\n", nccl_note == "ran" ? "done" : ("skipped (" + nccl_note + ")").c_str());
    if (!cal.empty()) std::printf("all-reduce fit, t = 2(n-1)*latency + bytes/bw: %s\n", cal.c_str());
    const std::string summary = "{\"ranks\":" + std::to_string(n) + ",\"all_correct\":" + (ok ? "true" : "false") +
                                ",\"mpi_peak_busbw_gbps\":" + peak_json(mpi_rows) +
                                ",\"nccl_peak_busbw_gbps\":" + nccl_peak +
                                ",\"calibration\":" + (cal.empty() ? "null" : cal) + "}";
    // The README's command names build/bench/, which a fresh build does not have yet.
    const std::filesystem::path parent = std::filesystem::path(a.json).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "comm_bench: cannot write --json %s\n", a.json.c_str());
      ok = false;
    } else {
      std::fprintf(f, "{\"bench\":\"comm_bench\",\"ranks\":%d,\"dtype\":\"fp32\",\"all_correct\":%s,\n"
                      "\"nccl\":\"%s\",\n\"calibration\":%s,\n\"mpi\":%s,\n\"nccl_rows\":%s}\n",
                   n, ok ? "true" : "false", nccl_note.c_str(), cal.empty() ? "null" : cal.c_str(),
                   rows_json(mpi_rows).c_str(), nccl_json.c_str());
      std::fclose(f);
    }
    std::printf("RESULT comm_bench %s\n", summary.c_str());
  }
  return ok ? 0 : 1;
}
