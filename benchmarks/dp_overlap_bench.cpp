// DP overlap benchmark (not a test): step time of data-parallel training on CPU ranks
// with bucket all-reduces overlapped with backward vs started after it, and the share
// of communication that overlap hides. Run: launch/mpirun_local.sh -np 2 dp_overlap_bench
//
//   comm      = time in finish_grads with overlap off (every bucket reduced, nothing
//               to hide behind: the communication time of one step)
//   exposed   = time in finish_grads with overlap on (what backward did not cover)
//   hidden    = 1 - exposed / comm
//   hidden_by_step = (step_off - step_on) / comm  (the same, seen through step time)
// Both include waiting for the slowest rank, so they are only meaningful with at most
// one rank per free core; oversubscribed runs mostly measure the scheduler.
// Also reported: per-rank bytes counted for one step vs the ring formula 2(n-1)/n * 4P.
// Prints one final machine-readable line (RESULT ...) and writes JSON (--json PATH).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/model/gpt.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"

using namespace gpt;
using namespace gpt::parallel;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int layers = 4, embd = 128, heads = 4, vocab = 8192, seq = 64, batch = 4, steps = 6;
  double bucket_mb = 1.0;
  std::string json = "dp_overlap_bench.json";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--layers") a.layers = std::atoi(v.c_str());
    else if (k == "--embd") a.embd = std::atoi(v.c_str());
    else if (k == "--heads") a.heads = std::atoi(v.c_str());
    else if (k == "--vocab") a.vocab = std::atoi(v.c_str());
    else if (k == "--seq") a.seq = std::atoi(v.c_str());
    else if (k == "--batch") a.batch = std::atoi(v.c_str());
    else if (k == "--steps") a.steps = std::atoi(v.c_str());
    else if (k == "--bucket-mb") a.bucket_mb = std::atof(v.c_str());
    else if (k == "--json") a.json = v;
    else {
      std::fprintf(stderr, "dp_overlap_bench: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct ModeTimes {
  std::vector<double> step, finish;
};

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  const Args a = parse(argc, argv);
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, CommConfig{600.0});
  Group world = comm->world_group();
  const int n = comm->world_size(), rank = comm->world_rank();

  GPTConfig cfg{a.layers, a.heads, a.embd, a.vocab, a.seq};
  ParamStore store;
  GPT model(cfg, store);
  store.materialize(Device::CPU);
  store.init(1);
  auto acts = model.make_activations();
  Tensor tokens = empty({a.batch, a.seq}, DType::I32), targets = empty({a.batch, a.seq}, DType::I32);
  for (int i = 0; i < a.batch * a.seq; ++i) {
    tokens.i32()[i] = (i * 31 + rank * 7) % a.vocab;
    targets.i32()[i] = (i * 17 + 3) % a.vocab;
  }

  // One DataParallel per mode over the same parameters; attach() picks the active one.
  DataParallel on(*comm, world, store, AdamWConfig{}, DPConfig{false, true, a.bucket_mb});
  DataParallel off(*comm, world, store, AdamWConfig{}, DPConfig{false, false, a.bucket_mb});
  ModeTimes times[2];
  auto run_step = [&](DataParallel& dp, ModeTimes* out) {
    comm->barrier(world).wait();  // start together: time the step, not the skew
    const auto t0 = Clock::now();
    store.zero_grads();
    dp.begin_step();
    dp.begin_micro(true);
    model.forward_train(*acts, tokens, &targets, 1.f / float(a.batch * a.seq));
    model.backward(*acts, nullptr);
    const auto t1 = Clock::now();
    dp.finish_grads();
    const double finish = seconds_since(t1);
    dp.clip_and_step(1e-4f, 1.f);
    const double step = seconds_since(t0);
    if (out) {
      out->step.push_back(step);
      out->finish.push_back(finish);
    }
  };
  on.attach(model);
  run_step(on, nullptr);  // warm-up: buffers sized, pages touched
  off.attach(model);
  run_step(off, nullptr);
  comm->traffic().reset();
  for (int s = 0; s < a.steps; ++s) {
    // Interleaved so both modes see the same machine load (5 people share 2 cores here).
    on.attach(model);
    run_step(on, &times[1]);
    off.attach(model);
    run_step(off, &times[0]);
  }
  const double P = double(store.total());
  const double bytes_per_step = comm->traffic().get("world", "allreduce").bytes / (2.0 * a.steps);
  const double analytic = ring_allreduce_bytes(4.0 * P, n);
  const double step_off = median(times[0].step), step_on = median(times[1].step);
  const double comm_s = median(times[0].finish), exposed = median(times[1].finish);
  const double hidden = comm_s > 0 ? 1.0 - exposed / comm_s : 0.0;
  const double hidden_by_step = comm_s > 0 ? (step_off - step_on) / comm_s : 0.0;
  if (rank == 0) {
    std::printf("dp_overlap_bench: %d ranks, %.2fM params, %d buckets of <= %.3g MiB, B %d T %d\n",
                n, P / 1e6, int(on.buckets().size()), a.bucket_mb, a.batch, a.seq);
    std::printf("  overlap off: step %.1f ms (communication %.1f ms after backward)\n",
                step_off * 1e3, comm_s * 1e3);
    std::printf("  overlap on:  step %.1f ms (exposed communication %.1f ms)\n", step_on * 1e3,
                exposed * 1e3);
    std::printf("  hidden fraction %.3f (by step time %.3f), speed-up %.3fx\n", hidden,
                hidden_by_step, step_off / step_on);
    std::printf("  bytes per rank per step %.0f, analytic 2(n-1)/n*4P %.0f\n", bytes_per_step,
                analytic);
    std::printf("RESULT bench=dp_overlap ranks=%d params=%.0f step_off_ms=%.3f step_on_ms=%.3f "
                "comm_ms=%.3f exposed_ms=%.3f hidden_frac=%.4f hidden_by_step=%.4f bytes_per_rank=%.0f "
                "analytic_bytes=%.0f\n",
                n, P, step_off * 1e3, step_on * 1e3, comm_s * 1e3, exposed * 1e3, hidden,
                hidden_by_step, bytes_per_step, analytic);
    if (FILE* f = std::fopen(a.json.c_str(), "w")) {
      std::fprintf(f,
                   "{\"bench\": \"dp_overlap\", \"ranks\": %d, \"params\": %.0f, \"buckets\": %d, "
                   "\"bucket_mb\": %g, \"batch\": %d, \"seq\": %d, \"steps\": %d,\n"
                   " \"step_off_ms\": %.3f, \"step_on_ms\": %.3f, \"comm_ms\": %.3f, "
                   "\"exposed_ms\": %.3f, \"hidden_frac\": %.4f, \"hidden_by_step\": %.4f,\n"
                   " \"bytes_per_rank\": %.0f, \"analytic_bytes\": %.0f}\n",
                   n, P, int(on.buckets().size()), a.bucket_mb, a.batch, a.seq, a.steps,
                   step_off * 1e3, step_on * 1e3, comm_s * 1e3, exposed * 1e3, hidden,
                   hidden_by_step, bytes_per_step, analytic);
      std::fclose(f);
    }
  }
  return 0;
}
