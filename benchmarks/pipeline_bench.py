#!/usr/bin/python3
"""Pipeline benchmark: the measured bubble and peak memory per stage of each schedule
(GPipe, 1F1B, interleaved v=2, ZB-H1) at p stages and m = 4, 8, 16 micro-batches, beside
the textbook formula and the schedule simulator (issue 12, acceptance 3).

Usage: /usr/bin/python3 benchmarks/pipeline_bench.py [--stages 2] [--micro 4 8 16] [--steps 5]

Each case is one pretrain run on p CPU ranks of this machine, one core each (train.threads
1, OMP_NUM_THREADS=1), synthetic data, on a model big enough that a pass (tens of ms) dwarfs
a point-to-point message (B*T*C fp32 = 512 KiB through shared memory). pretrain's
'pipeline' metrics record and the run's timeline give:
  pretrain    pretrain's measured bubble: 1 - compute time / step wall time, mean over
              the pipeline ranks and the steps after the first. Each rank's wall time
              ends at its OWN last pass, so the last stage's wait for the first stage's
              cool-down is not in it: it reads below the formula's definition;
  trace       the last step's bubble from its timeline over the common span:
              1 - sum of the ranks' compute / (p x the end of the step's last pass),
              the definition of the formula and the simulator (one step: noisier);
  formula     (p-1)/(m+p-1) for GPipe and 1F1B, (p-1)/(v*m+p-1) interleaved,
              (p-1)/(3m+p-1) ZB-H1 (equal F, B, W; no communication);
  sim         build/benchmarks/pipeline_sim with the run's own mean F / B / Bi / W
              durations and no message latency: trace - sim is what the mean costs
              cannot explain (stage imbalance, e.g. the head on the last stage; pass-to-pass
              noise; messages);
  peak MiB    each stage's peak tensor memory over the run, counted from before the
              parameters were allocated: parameters, gradients and AdamW state are in it
              besides the activations in flight.
Memory: GPipe's peak per stage is fitted as fixed + slope * m over the m's measured; a
run's "in flight" is then (peak - fixed) / slope micro-batches' activations, beside what
the schedule holds (the simulator's count; interleaved chunks count 1/v each). 1F1B should
hold p - stage, GPipe m.
--repeats N keeps the fastest of N runs per case (the least disturbed by other jobs on the
cores) and every run's numbers in the JSON, with the load average before each.
Timelines of the m=8 runs go to <json dir>/pipeline_<schedule>_p<p>_m8.json (Chrome trace),
each plotted as a Gantt PNG, and the bubbles against m to <json>.png (plot_pipeline.py).
More stages than cores oversubscribe: the ranks then take turns on a core and the bubble
measures the OS scheduler, not the pipeline. Timings are numbers to read, never asserted.
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULES = (("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zb-h1", 1))


def read_timeline(timeline):
    """From a Chrome-trace timeline of one step: (mean duration in ms of each pass kind,
    {"F": ms, "B": ms, ...}; the step's bubble over the common span, 1 - sum of the ranks'
    compute / (p x the last pass's end), as the formula and the simulator count it)."""
    with open(timeline) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    kinds = {}
    for e in events:
        kinds.setdefault(e["cat"], []).append(e["dur"] / 1e3)
    ranks = len({e["tid"] for e in events})
    span = max(e["ts"] + e["dur"] for e in events)
    bubble = 1 - sum(e["dur"] for e in events) / (ranks * span)
    return {k: statistics.mean(v) for k, v in kinds.items()}, bubble


def simulate(a, schedule, p, m, v, costs):
    """pipeline_sim's RESULT for the shape with the measured mean pass costs (a whole
    backward split evenly into B and W where the run did not split it)."""
    back = costs.get("B")
    bi, w = (back / 2, back / 2) if back is not None else (costs["Bi"], costs["W"])
    cmd = [a.sim, "--schedule", schedule, "--stages", str(p), "--micro", str(m), "--virtual", str(v),
           "--forward", "%g" % costs["F"], "--backward-input", "%g" % bi, "--backward-weight", "%g" % w]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"^RESULT pipeline_sim (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise RuntimeError("pipeline_sim failed: %s\n%s" % (" ".join(cmd), proc.stderr[-2000:]))
    return json.loads(found.group(1))


def run_once(a, schedule, p, m, v, timeline):
    """One pretrain run: a row with the measured numbers, the simulator's and the command."""
    flags = ["--model.preset", "tiny", "--model.n_layer", a.layers, "--model.n_head", a.heads,
             "--model.n_embd", a.embd, "--model.vocab_size", a.vocab, "--train.seq_len", a.seq,
             "--train.micro_batch", a.batch, "--train.grad_accum", m, "--train.steps", a.steps,
             "--train.warmup", 2, "--parallel.pp", p, "--parallel.schedule", schedule,
             "--parallel.virtual_stages", v, "--parallel.timeline", timeline]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pipeline_bench_") as run_dir:
        cmd, train, others = bc.run_local_pretrain(a.pretrain, p, flags, run_dir)
    pipe = others["pipeline"]
    costs, trace_bubble = read_timeline(timeline)
    sim = simulate(a, schedule, p, m, v, costs)
    return {"schedule": schedule, "p": p, "m": m, "v": v, "bubble": pipe["bubble"], "trace_bubble": trace_bubble,
            "formula_bubble": pipe["formula_bubble"], "sim_bubble": sim["bubble"],
            "sim_peak_activations": sim["peak_activations"], "pass_ms": costs,
            "peak_mib_per_stage": pipe["peak_mib_per_stage"],
            "step_ms": statistics.median(r["step_ms"] for r in train[1:]), "load_before": load,
            "command": " ".join(shlex.quote(c) for c in cmd)}


def run_case(a, schedule, p, m, v, timeline):
    """The least disturbed (fastest median step) of --repeats runs, its timeline at
    `timeline`; the others' bubbles and step times kept in the row's "repeats"."""
    runs = []
    for k in range(a.repeats):
        runs.append(run_once(a, schedule, p, m, v, "%s.%d" % (timeline, k)))
    best = min(range(len(runs)), key=lambda k: runs[k]["step_ms"])
    for k in range(len(runs)):
        if k == best:
            os.replace("%s.%d" % (timeline, k), timeline)
        else:
            os.remove("%s.%d" % (timeline, k))
    row = dict(runs[best])
    row["repeats"] = [{key: r[key] for key in ("bubble", "trace_bubble", "step_ms", "load_before",
                                                 "peak_mib_per_stage")}
                      for r in runs]
    return row


def skip_reason(a, schedule, p, m, v):
    """Why pretrain would refuse the shape at start-up (issue 12's bad layouts), or None."""
    if v > 1 and m < p:
        return "interleaving needs m >= p"
    if a.layers < p * v:
        return "%d layers cannot fill %d chunks" % (a.layers, p * v)
    return None


def fit_line(xs, ys):
    """Least-squares (intercept, slope) of y = intercept + slope * x."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def add_in_flight(rows):
    """Per p and stage, GPipe's peak = fixed + slope * m; each row gets in_flight per stage
    (measured, micro-batches) and held_per_schedule (the simulator's, in micro-batches).
    Returns {p: [{"fixed_mib", "mib_per_micro"} per stage]}."""
    fits = {}
    for p in sorted({r["p"] for r in rows}):
        gpipe = [r for r in rows if r["p"] == p and r["schedule"] == "gpipe"]
        if len({r["m"] for r in gpipe}) < 2:
            continue
        fits[p] = []
        for s in range(p):
            fixed, slope = fit_line([r["m"] for r in gpipe], [r["peak_mib_per_stage"][s] for r in gpipe])
            fits[p].append({"fixed_mib": fixed, "mib_per_micro": slope})
        for r in rows:
            if r["p"] == p:
                r["in_flight"] = [(r["peak_mib_per_stage"][s] - f["fixed_mib"]) / f["mib_per_micro"]
                                  for s, f in enumerate(fits[p])]
                r["held_per_schedule"] = [n / r["v"] for n in r["sim_peak_activations"]]
    return fits


def print_table(rows):
    print("%-11s %2s %3s %2s | %7s %7s %7s %7s %9s | %8s | %-21s | %-17s" % (
        "schedule", "p", "m", "v", "pretrain", "trace", "formula", "sim", "trace-for", "step ms",
        "peak MiB per stage", "in flight / held"))
    for r in rows:
        flight = " ".join("%.1f/%g" % (f, h) for f, h in zip(r.get("in_flight", []), r.get("held_per_schedule", [])))
        print("%-11s %2d %3d %2d | %7.1f%% %6.1f%% %6.1f%% %6.1f%% %+7.1fpp | %8.0f | %-21s | %-17s" % (
            r["schedule"], r["p"], r["m"], r["v"], 100 * r["bubble"], 100 * r["trace_bubble"],
            100 * r["formula_bubble"], 100 * r["sim_bubble"], 100 * (r["trace_bubble"] - r["formula_bubble"]),
            r["step_ms"], " ".join("%.1f" % x for x in r["peak_mib_per_stage"]), flight))


def memory_checks(rows, fits):
    """The memory claims: 1F1B holds at most p - stage micro-batches (half a micro-batch
    of slack for the fit), GPipe m; peak(GPipe) / peak(1F1B) per p, m and stage."""
    checks = []
    for p, fit in fits.items():
        print("memory p=%d: GPipe fit per stage: %s" % (p, "; ".join(
            "stage %d %.1f MiB fixed + %.2f MiB per micro-batch" % (s, f["fixed_mib"], f["mib_per_micro"])
            for s, f in enumerate(fit))))
        for m in sorted({r["m"] for r in rows if r["p"] == p}):
            by = {r["schedule"]: r for r in rows if r["p"] == p and r["m"] == m}
            if "gpipe" not in by or "1f1b" not in by:
                continue
            g, o = by["gpipe"], by["1f1b"]
            bound_ok = all(f <= p - s + 0.5 for s, f in enumerate(o["in_flight"]))
            check = {"p": p, "m": m, "one_f_one_b_within_p_minus_stage": bound_ok,
                     "peak_ratio_gpipe_over_1f1b": [x / y for x, y in zip(g["peak_mib_per_stage"],
                                                                          o["peak_mib_per_stage"])],
                     "activation_ratio_gpipe_over_1f1b": [x / y for x, y in zip(g["in_flight"], o["in_flight"])]}
            checks.append(check)
            print("memory p=%d m=%2d: 1F1B in flight %s (bound p - stage: %s) %s; GPipe %s; "
                  "peak(GPipe)/peak(1F1B) %s, activations only %s" % (
                      p, m, " ".join("%.1f" % f for f in o["in_flight"]),
                      " ".join(str(p - s) for s in range(p)), "ok" if bound_ok else "EXCEEDED",
                      " ".join("%.1f" % f for f in g["in_flight"]),
                      " ".join("%.2f" % x for x in check["peak_ratio_gpipe_over_1f1b"]),
                      " ".join("%.1f" % x for x in check["activation_ratio_gpipe_over_1f1b"])))
    return checks


def main():
    bench_dir = os.path.join(ROOT, "build", "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", type=int, nargs="+", default=[2], help="pipeline ranks p (one core each)")
    ap.add_argument("--micro", type=int, nargs="+", default=[4, 8, 16], help="micro-batches per step m")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="sequences per micro-batch")
    ap.add_argument("--steps", type=int, default=5, help="steps per run; pretrain leaves out the first")
    ap.add_argument("--repeats", type=int, default=1, help="runs per case; the fastest is kept (others share the cores)")
    ap.add_argument("--pretrain", default=os.path.join(ROOT, "build", "launch", "pretrain"))
    ap.add_argument("--sim", default=os.path.join(ROOT, "build", "benchmarks", "pipeline_sim"))
    ap.add_argument("--json", default=os.path.join(bench_dir, "pipeline_bench.json"))
    a = ap.parse_args()
    bc.require_executable(a.pretrain, "pipeline_bench")
    bc.require_executable(a.sim, "pipeline_bench", target="pipeline_sim", flag="--sim")
    out_dir = os.path.dirname(os.path.abspath(a.json))
    os.makedirs(out_dir, exist_ok=True)
    cores = os.cpu_count() or 1
    if max(a.stages) > cores:
        print("pipeline_bench: WARNING: %d stages on %d cores: oversubscribed ranks take turns on a core, "
              "so their bubble measures the OS scheduler, not the pipeline" % (max(a.stages), cores))

    rows, timelines = [], []
    for p in a.stages:
        for m in a.micro:
            for schedule, v in SCHEDULES:
                reason = skip_reason(a, schedule, p, m, v)
                if reason:
                    print("pipeline_bench: %s p=%d m=%d v=%d skipped: %s" % (schedule, p, m, v, reason))
                    continue
                timeline = os.path.join(out_dir, "pipeline_%s_p%d_m%d.json" % (schedule, p, m))
                rows.append(run_case(a, schedule, p, m, v, timeline))
                if m == 8:
                    timelines.append(timeline)
                else:
                    os.remove(timeline)
                r = rows[-1]
                print("pipeline_bench: %s p=%d m=%d: bubble %.1f%% pretrain, %.1f%% trace (formula %.1f%%), "
                      "load %.1f" % (schedule, p, m, 100 * r["bubble"], 100 * r["trace_bubble"],
                                     100 * r["formula_bubble"], r["load_before"]), flush=True)
    fits = add_in_flight(rows)
    print()
    print_table(rows)
    checks = memory_checks(rows, fits)
    res = {"bench": "pipeline_bench", "cores": cores, "load_after": os.getloadavg()[0],
           "repeats": a.repeats, "model": {"n_layer": a.layers, "n_head": a.heads, "n_embd": a.embd, "vocab_size": a.vocab,
                     "seq_len": a.seq, "micro_batch": a.batch, "steps": a.steps},
           "rows": rows, "memory_fit": {str(p): f for p, f in fits.items()}, "memory_checks": checks,
           "timelines": timelines}
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print("pipeline_bench: wrote %s" % a.json)
    try:
        import plot_pipeline
        for path in [a.json] + timelines:
            print("pipeline_bench: plot %s" % plot_pipeline.plot_file(path, out_dir))
    except Exception as e:  # matplotlib missing: the JSON is the result
        print("pipeline_bench: no plot (%s)" % e)
    summary = [{k: r[k] for k in ("schedule", "p", "m", "v", "bubble", "trace_bubble", "formula_bubble",
                                 "sim_bubble")}
               for r in rows]
    print("RESULT pipeline_bench %s" % json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
