#!/usr/bin/python3
"""Scaling benchmark: pretrain's step time under DP, DP + ZeRO-1, TP and PP at 1..--max-ranks
ranks (one core each, train.threads 1, synthetic data), weak and strong scaling, beside
the performance model's prediction for the same layout on the calibrated `local` cluster.

Usage: /usr/bin/python3 benchmarks/scaling_bench.py [--max-ranks 2] [--comm-json build/bench/comm_bench.json]
       /usr/bin/python3 benchmarks/scaling_bench.py --repredict   (the saved --json against today's model)

1. Calibration. Communication: the latency and bandwidth that comm_bench fitted to each
   collective kind (per size regime; the model times each collective at its own kind's), and
   (run it first: bash launch/mpirun_local.sh -np 2 build/benchmarks/comm_bench --json
   build/bench/comm_bench.json). Compute: peak = one core's fp32 FMA rate (32 FLOP/cycle
   with AVX2: two 8-wide FMA units, at /proc/cpuinfo's clock), and the GEMM efficiency
   that makes plan's one-rank step equal the measured one-rank step (compute = measured
   minus plan's memory-bound and optimizer time; the memory bandwidth behind those from
   the one-rank run's update time, which plan counts as 32 bytes a parameter). Node
   contention: the same one-rank run started on min(--max-ranks, cores) processes at
   once, with no communication between them; their mean step over the lone one's (both
   core-normalised) is how much ranks sharing the socket (memory bandwidth, last-level
   cache, the VM's cores) slow each other's compute, which plan applies to every layout
   with ranks on one node. Written as {"calibration": {...}} to
   --calibration-json, which `plan --cluster.from_json` reads; the presets' constants
   are left as they are. So the one-rank prediction matches by construction; the rank
   counts above one are the check.
2. Runs. Per layout and rank count n: DP and DP + ZeRO-1, weak (micro_batch --batch per
   rank) and strong (global batch --batch split over n); TP strong (the same batch, the
   model split over n ranks; n must divide the heads); PP strong (the same batch as
   --pp-micro-batches micro-batches through n 1F1B stages, whose bubble the model counts as
   (n-1)/(m+n-1)). n = 1 is one run shared by all.
   step_ms: the median of metrics.jsonl's steps after the first --skip, the fastest of
   --repeats runs; each row also shows the ranks' CPU share and the load average before
   it, since a machine shared with other jobs gives a rank less than its core, and the
   core-normalised step (step x CPU share) with its error. The 25% acceptance is judged on
   the raw step time at rank counts up to the core count; with a CPU share well below 1
   it cannot be judged on that run, and the normalised column is only a rough indication.
   Beside each step, rank 0's split from metrics.jsonl (medians): the wait for the
   gradient reduction after backward (dp_wait_ms: the exposed DP communication), the
   update (update_ms: clipping, AdamW, ZeRO-1's parameter all-gather) and the time in TP
   collectives (tp_comm_ms), with plan's dp_comm_s, optimizer_s and tp_comm_s.
3. Bytes: rank 0's per-step bytes per group (pretrain's 'comm_bytes' record, the ring
   formulas of parallel/communicator.h) against the analytic volume: DP 2(n-1)/n * 4P
   (all-reduce; reduce-scatter + all-gather under ZeRO-1, the same total), TP per layer 4
   all-reduces of b*s*h fp32 values, 2(n-1)/n each; PP: the first stage sends each
   micro-batch's activations, b*s*h fp32, and sums the tied embedding's gradient with the
   last stage, V*h fp32 over 2 ranks. The gradient-norm and loss all-reduces add a few bytes.
Prints one table, a final line `RESULT scaling_bench {json}`, writes --json and a PNG
(plot_scaling.py). Timings are numbers to read, never asserted.
"""
import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import resource

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def core_peak_tflops():
    """One core's fp32 FMA peak: 32 FLOP/cycle (AVX2: 2 FMA units x 8 lanes x 2) x clock."""
    mhz = 0.0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":")[1]))
    return 32 * mhz * 1e6 / 1e12 if mhz else 0.1


def run_pretrain(a, n, layout, micro_batch, copies=1):
    """The fastest of --repeats runs (other people's jobs share the cores here): a dict
    with step_ms (median after --skip), split (medians of the step's parts), comm (the
    comm_bytes record), cpu_share (the ranks' CPU seconds / (wall seconds x ranks),
    start-up included: below ~0.9 the ranks did not get a core each) and load (the
    1-minute load average before the run). copies > 1 starts that many independent runs
    at once (the node-contention calibration); step_ms and split are then their means."""
    best = None
    for _ in range(a.repeats):
        load = os.getloadavg()[0]
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(copies) as pool:
            runs = list(pool.map(lambda _: run_pretrain_once(a, n, layout, micro_batch), range(copies)))
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        step_ms = statistics.mean(r[0] for r in runs)
        split = {k: statistics.mean(r[2][k] for r in runs) for k in runs[0][2]}
        run = {"step_ms": step_ms, "split": split, "comm": runs[0][1], "cpu_share": cpu / (wall * n * copies),
               "load": load}
        if best is None or step_ms < best["step_ms"]:
            best = run
    return best


def run_pretrain_once(a, n, layout, micro_batch):
    """(median step_ms after --skip, comm_bytes record, {part: median ms}) of one pretrain
    run on n ranks; the parts are rank 0's."""
    with tempfile.TemporaryDirectory(prefix="scaling_bench_") as run_dir:
        cmd = ["bash", os.path.join(ROOT, "launch", "mpirun_local.sh"), "-np", str(n), a.pretrain,
               "--model.preset", "tiny", "--model.n_layer", str(a.layers), "--model.n_head", str(a.heads),
               "--model.n_embd", str(a.embd), "--model.vocab_size", str(a.vocab),
               "--train.seq_len", str(a.seq), "--train.micro_batch", str(micro_batch),
               "--train.grad_accum", str(a.pp_micro_batches if layout == "pp" else 1),
               "--train.steps", str(a.steps), "--train.threads", "1", "--train.device", "cpu",
               "--train.warmup", "2", "--eval.every", "0", "--data.mixture", "",
               "--run.dir", run_dir, "--run.checkpoint_every", "0", "--run.save_final", "false",
               "--run.log_every", "1000", "--sample.tokens", "0"]
        if layout == "tp":
            cmd += ["--parallel.tp", str(n)]
        if layout == "dp+zero1":
            cmd += ["--parallel.zero1", "true"]
        if layout == "pp":
            cmd += ["--parallel.pp", str(n), "--parallel.schedule", "1f1b"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("pretrain failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd),
                                                                 (proc.stdout + proc.stderr)[-3000:]))
        train, others = bc.read_metrics(run_dir)
        comm = others.get("comm_bytes", {})
    times = [r["step_ms"] for r in train[a.skip:]]
    split = {k: statistics.median(r.get(k, 0.0) for r in train[a.skip:])
             for k in ("dp_wait_ms", "update_ms", "tp_comm_ms")}
    return statistics.median(times), comm, split


def core_ms(run):
    """The step time had each rank had its whole core: step_ms x CPU share (at most 1).
    A rough correction (start-up counted in the share, communication waits spent
    partly asleep), shown beside the raw time, never instead of it."""
    return run["step_ms"] * min(1.0, run["cpu_share"])


def plan(a, n, layout, micro_batch, extra=()):
    """plan's RESULT json for the layout on the `local` cluster."""
    tp = n if layout == "tp" else 1
    pp = n if layout == "pp" else 1
    dp = n // (tp * pp)
    m = a.pp_micro_batches if layout == "pp" else 1
    cmd = [a.plan, "--cluster.preset", "local", "--cluster.gpus", str(n), "--cluster.gpus_per_node", str(max(n, 2)),
           "--model.preset", "tiny", "--model.n_layer", str(a.layers), "--model.n_head", str(a.heads),
           "--model.n_embd", str(a.embd), "--model.vocab_size", str(a.vocab), "--train.seq_len", str(a.seq),
           "--train.micro_batch", str(micro_batch), "--train.global_batch", str(micro_batch * dp * m),
           "--train.dtype", "fp32", "--parallel.tp", str(tp), "--parallel.dp", str(dp),
           "--parallel.pp", str(pp), "--parallel.schedule", "1f1b",
           "--parallel.zero1", "true" if layout == "dp+zero1" else "false",
           "--parallel.sequence_parallel", "false"] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"^RESULT plan (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError("plan failed: %s\n%s%s" % (" ".join(cmd), proc.stdout[-2000:], proc.stderr[-2000:]))
    return json.loads(m.group(1))


def analytic_bytes(a, n, layout, micro_batch):
    P = bc.num_params(a.layers, a.embd, a.vocab, 256)  # block_size of the tiny preset
    ring = 2.0 * (n - 1) / n if n > 1 else 0.0
    if layout == "tp":  # one micro-batch per step (train.grad_accum 1)
        return sum(bc.tp_bytes_per_step(n, False, a.layers, a.embd, micro_batch * a.seq, 1).values())
    if layout == "pp":  # rank 0: the first stage's sends, and the tied wte's sum with the last stage
        return a.pp_micro_batches * micro_batch * a.seq * a.embd * 4 + (4.0 * a.vocab * a.embd if n > 1 else 0)
    return ring * 4 * P


def calibrate(a, one_rank_step_ms, one_rank_update_ms, contention):
    with open(a.comm_json) as f:
        comm = json.load(f)
    cal = dict(comm.get("calibration") or {})
    if not cal:
        sys.exit("scaling_bench: %s has no calibration (run comm_bench on 2+ ranks)" % a.comm_json)
    peak = a.peak_tflops or core_peak_tflops()
    # Memory bandwidth: the update (norm, clipping, AdamW) streams the parameters, gradients
    # and moments, which plan counts as 32 bytes a parameter at hbm_gbps; the one-rank
    # run's update_ms gives the bandwidth a core achieves on it.
    probe_gbps = 20.0
    p = plan(a, 1, "dp", a.batch, ["--cluster.peak_tflops", "%g" % peak, "--cluster.gemm_efficiency", "1",
                                   "--cluster.hbm_gbps", "%g" % probe_gbps])
    hbm_gbps = probe_gbps * p["optimizer_s"] / max(one_rank_update_ms / 1e3, 1e-9)
    p = plan(a, 1, "dp", a.batch, ["--cluster.peak_tflops", "%g" % peak, "--cluster.gemm_efficiency", "1",
                                   "--cluster.hbm_gbps", "%g" % hbm_gbps])
    # GEMM efficiency: what is left of the one-rank step after memory-bound ops and the update.
    rest = p["memory_ops_s"] + p["optimizer_s"]
    eff = p["compute_s"] / max(one_rank_step_ms / 1e3 - rest, 1e-9)
    cal.update({"peak_tflops": round(peak, 6), "gemm_efficiency": round(eff, 4), "hbm_gbps": round(hbm_gbps, 4),
                "node_contention": round(contention["ratio"], 4)})
    doc = {"bench": "scaling_bench calibration", "cluster": "local", "from": {
        "comm_json": a.comm_json, "one_rank_step_ms": one_rank_step_ms, "one_rank_update_ms": one_rank_update_ms,
        "node_contention": contention}, "calibration": cal}
    os.makedirs(os.path.dirname(os.path.abspath(a.calibration_json)), exist_ok=True)
    with open(a.calibration_json, "w") as f:
        json.dump(doc, f, indent=1)
    return cal


def repredict(a):
    """--repredict: the saved --json measurement against the current plan and --comm-json's
    calibration (the one-rank step's compute, memory and contention calibration kept from
    the saved run); nothing is run but plan. Writes --json with "_repredict" before .json."""
    with open(a.json) as f:
        saved = json.load(f)
    with open(a.comm_json) as f:
        cal = dict(json.load(f).get("calibration") or {})
    for k in ("peak_tflops", "gemm_efficiency", "hbm_gbps", "node_contention"):
        cal[k] = saved["calibration"][k]
    doc = {"bench": "scaling_bench calibration (repredict)", "cluster": "local", "calibration": cal}
    cal_path = a.calibration_json.replace(".json", "_repredict.json")
    with open(cal_path, "w") as f:
        json.dump(doc, f, indent=1)
    print("scaling_bench: re-predicting %s with %s" % (a.json, json.dumps(cal)))
    print("%-9s %-6s %5s %3s | %9s %10s %8s | %10s %8s | %8s %8s | %15s %15s %15s %15s" % (
        "layout", "scale", "ranks", "b", "step_ms", "pred_ms", "error", "old_pred", "old_err", "core_ms", "error",
        "dp_wait/pred", "update/pred", "tp_comm/pred", "pp_p2p_pred"))
    cores = saved.get("cores", os.cpu_count() or 1)
    rows = []
    for r in saved["rows"]:
        p = plan(a, r["ranks"], r["layout"], r["micro_batch"], ["--cluster.from_json", cal_path])
        pred = p["step_s"] * 1e3
        row = dict(r, predicted_step_ms=pred, rel_error=(pred - r["step_ms"]) / r["step_ms"],
                   core_rel_error=(pred - r["core_step_ms"]) / r["core_step_ms"], predicted=p,
                   old_predicted_step_ms=r["predicted_step_ms"], old_rel_error=r["rel_error"])
        rows.append(row)
        sp = r["split_ms"]
        print("%-9s %-6s %5d %3d | %9.1f %10.1f %+7.1f%% | %10.1f %+7.1f%% | %8.1f %+7.1f%% | "
              "%7.1f/%-7.1f %7.1f/%-7.1f %7.1f/%-7.1f %15.1f" % (
                  r["layout"], r["scaling"], r["ranks"], r["micro_batch"], r["step_ms"], pred, 100 * row["rel_error"],
                  r["predicted_step_ms"], 100 * r["rel_error"], r["core_step_ms"], 100 * row["core_rel_error"],
                  sp["dp_wait_ms"], p["dp_comm_s"] * 1e3, sp["update_ms"], p["optimizer_s"] * 1e3,
                  sp["tp_comm_ms"], p["tp_comm_s"] * 1e3, p["pp_p2p_s"] * 1e3))
    core_rows = [r for r in rows if r["ranks"] <= cores]
    worst_core = max(abs(r["rel_error"]) for r in core_rows)
    res = dict(saved, bench="scaling_bench repredict", calibration=cal, rows=rows,
               max_abs_rel_error=max(abs(r["rel_error"]) for r in rows), max_abs_rel_error_core_per_rank=worst_core,
               within_25pct_core_per_rank=worst_core <= 0.25,
               max_abs_core_normalised_error=max(abs(r["core_rel_error"]) for r in core_rows))
    out = a.json.replace(".json", "_repredict.json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("RESULT scaling_bench_repredict %s" % json.dumps({
        "max_abs_rel_error_core_per_rank": round(worst_core, 4), "within_25pct_core_per_rank": worst_core <= 0.25,
        "max_abs_core_normalised_error": round(res["max_abs_core_normalised_error"], 4),
        "rel_error": {"%s/%s/%d" % (r["layout"], r["scaling"], r["ranks"]): round(r["rel_error"], 4) for r in rows}},
        separators=(",", ":")))


def main():
    bench_dir = os.path.join(ROOT, "build", "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-ranks", type=int, default=2, help="up to this many ranks, powers of 2 (one core each)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="sequences per rank (weak) / per step (strong, TP)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip", type=int, default=3, help="first steps left out of the median")
    ap.add_argument("--peak-tflops", type=float, default=0,
                    help="one core's peak; default 32 FLOP/cycle at /proc/cpuinfo's clock (a VM often shows the "
                         "base clock: the fitted efficiency then exceeds 1 by the boost)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is kept")
    ap.add_argument("--pp-micro-batches", type=int, default=4, help="micro-batches a PP step splits --batch into")
    ap.add_argument("--pretrain", default=os.path.join(ROOT, "build", "launch", "pretrain"))
    ap.add_argument("--plan", default=os.path.join(ROOT, "build", "launch", "plan"))
    ap.add_argument("--comm-json", default=os.path.join(bench_dir, "comm_bench.json"))
    ap.add_argument("--calibration-json", default=os.path.join(bench_dir, "local_calibration.json"))
    ap.add_argument("--json", default=os.path.join(bench_dir, "scaling_bench.json"))
    ap.add_argument("--repredict", action="store_true",
                    help="no runs: re-predict the saved --json measurement with the current plan and --comm-json")
    a = ap.parse_args()
    if a.repredict:
        bc.require_executable(a.plan, "scaling_bench", target="plan", flag="--plan")
        return repredict(a)
    bc.require_executable(a.pretrain, "scaling_bench")
    bc.require_executable(a.plan, "scaling_bench", target="plan", flag="--plan")
    if not os.path.isfile(a.comm_json):
        sys.exit("scaling_bench: %s not found; run first: bash launch/mpirun_local.sh -np 2 "
                 "build/benchmarks/comm_bench --json %s" % (a.comm_json, a.comm_json))
    cores = os.cpu_count() or 1
    ranks = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= a.max_ranks]
    if a.max_ranks > cores:
        print("scaling_bench: note: %d ranks on %d cores; above %d the step times measure the scheduler"
              % (a.max_ranks, cores, cores))

    base = run_pretrain(a, 1, "dp", a.batch)
    # Ranks per node in the runs below (a core each): as many independent one-rank runs at once.
    side_by_side = max(1, min(a.max_ranks, cores))
    together = run_pretrain(a, 1, "dp", a.batch, copies=side_by_side) if side_by_side > 1 else base
    contention = {"copies": side_by_side, "alone_ms": round(core_ms(base), 2), "together_ms": round(core_ms(together), 2),
                  "alone_raw_ms": round(base["step_ms"], 2), "together_raw_ms": round(together["step_ms"], 2),
                  "ratio": core_ms(together) / core_ms(base)}
    if contention["ratio"] < 1:
        # Ranks side by side cannot compute faster than alone: below 1 is other jobs' load
        # changing between the two measurements, so it counts as no contention.
        print("scaling_bench: note: side-by-side runs measured faster than the lone one (%.3f): load changed "
              "between them; node contention taken as 1" % contention["ratio"])
        contention["ratio"] = 1.0
    print("scaling_bench: %d independent one-rank runs at once: %.1f ms a step against %.1f alone (core-normalised; "
          "raw %.1f / %.1f): node contention %.3f" % (side_by_side, contention["together_ms"], contention["alone_ms"],
                                                      together["step_ms"], base["step_ms"], contention["ratio"]))
    # The model's devices are whole cores: calibrate on the core-normalised step.
    cal = calibrate(a, core_ms(base), base["split"]["update_ms"] * min(1.0, base["cpu_share"]), contention)
    print("scaling_bench: calibrated local cluster (%s): %s" % (a.calibration_json, json.dumps(cal)))

    cases = []  # (layout, scaling, n, micro_batch)
    for n in ranks:
        for layout in ("dp", "dp+zero1"):
            cases.append((layout, "weak", n, a.batch))
            if a.batch % n == 0:
                cases.append((layout, "strong", n, a.batch // n))
        if a.heads % n == 0:
            cases.append(("tp", "strong", n, a.batch))
        if n > 1 and a.layers >= n and a.batch % a.pp_micro_batches == 0:
            cases.append(("pp", "strong", n, a.batch // a.pp_micro_batches))
    rows = []
    print("%-9s %-6s %5s %3s | %9s %9s %10s | %9s %7s | %12s %12s | %5s %5s | %8s %7s | %15s %15s %15s" % (
        "layout", "scale", "ranks", "b", "step_ms", "tok/s", "pred_ms", "pred_tok/s", "error",
        "bytes/step", "analytic", "cpu", "load", "core_ms", "error", "dp_wait/pred", "update/pred", "tp_comm/pred"))
    for layout, scaling, n, b in cases:
        run = base if n == 1 else run_pretrain(a, n, layout, b)
        step_ms, comm = run["step_ms"], run["comm"]
        dp = 1 if layout in ("tp", "pp") else n
        steps = max(comm.get("steps", 1), 1)
        if layout == "pp":
            measured_bytes = (comm.get("pp_send_bytes", 0) + comm.get("embed_allreduce_bytes", 0)) / steps
        else:
            group = "tp" if layout == "tp" else "dp"
            measured_bytes = sum(comm.get("%s_%s_bytes" % (group, op), 0)
                                 for op in ("allreduce", "reduce_scatter", "allgather")) / steps
        p = plan(a, n, layout, b, ["--cluster.from_json", a.calibration_json])
        tokens = b * dp * a.seq * (a.pp_micro_batches if layout == "pp" else 1)
        row = {"layout": layout, "scaling": scaling, "ranks": n, "micro_batch": b, "tokens_per_step": tokens,
               "step_ms": step_ms, "tokens_per_s": tokens / (step_ms / 1e3),
               "predicted_step_ms": p["step_s"] * 1e3, "predicted_tokens_per_s": tokens / p["step_s"],
               "rel_error": (p["step_s"] * 1e3 - step_ms) / step_ms,
               "core_step_ms": core_ms(run), "core_rel_error": (p["step_s"] * 1e3 - core_ms(run)) / core_ms(run),
               "bytes_per_step": measured_bytes, "analytic_bytes_per_step": analytic_bytes(a, n, layout, b),
               "cpu_share": run["cpu_share"], "load_before": run["load"], "split_ms": run["split"], "predicted": p}
        rows.append(row)
        sp = run["split"]
        print("%-9s %-6s %5d %3d | %9.1f %9.0f %10.1f | %9.0f %+6.1f%% | %12.0f %12.0f | %5.2f %5.1f | %8.1f %+6.1f%% | "
              "%7.1f/%-7.1f %7.1f/%-7.1f %7.1f/%-7.1f" % (
                  layout, scaling, n, b, step_ms, row["tokens_per_s"], row["predicted_step_ms"],
                  row["predicted_tokens_per_s"], 100 * row["rel_error"], measured_bytes, row["analytic_bytes_per_step"],
                  run["cpu_share"], run["load"], row["core_step_ms"], 100 * row["core_rel_error"],
                  sp["dp_wait_ms"], p["dp_comm_s"] * 1e3, sp["update_ms"], p["optimizer_s"] * 1e3,
                  sp["tp_comm_ms"], p["tp_comm_s"] * 1e3))
        sys.stdout.flush()

    worst = max(abs(r["rel_error"]) for r in rows)
    core_rows = [r for r in rows if r["ranks"] <= cores]
    worst_core = max(abs(r["rel_error"]) for r in core_rows)
    worst_norm = max(abs(r["core_rel_error"]) for r in core_rows)
    res = {"bench": "scaling_bench", "model": "L%d H%d C%d V%d T%d, fp32, threads 1" % (
        a.layers, a.heads, a.embd, a.vocab, a.seq), "cores": cores, "batch": a.batch, "steps": a.steps,
        "skip": a.skip, "calibration": cal, "rows": rows, "max_abs_rel_error": worst,
        "max_abs_rel_error_core_per_rank": worst_core, "within_25pct_core_per_rank": worst_core <= 0.25,
        "max_abs_core_normalised_error": worst_norm, "min_cpu_share": min(r["cpu_share"] for r in rows)}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    try:
        import plot_scaling
        print("scaling_bench: plot %s" % plot_scaling.plot_file(a.json, os.path.dirname(os.path.abspath(a.json))))
    except ImportError as e:
        print("scaling_bench: no plot (%s)" % e)
    summary = {"ranks": ranks, "max_abs_rel_error": round(worst, 4),
               "max_abs_rel_error_core_per_rank": round(worst_core, 4),
               "within_25pct_core_per_rank": worst_core <= 0.25,
               "max_abs_core_normalised_error": round(worst_norm, 4),
               "min_cpu_share": round(min(r["cpu_share"] for r in rows), 3),
               "step_ms": {"%s/%s/%d" % (r["layout"], r["scaling"], r["ranks"]): round(r["step_ms"], 1) for r in rows},
               "calibration": cal}
    print("RESULT scaling_bench %s" % json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
