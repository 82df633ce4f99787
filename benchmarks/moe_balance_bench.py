#!/usr/bin/python3
"""Load balancing of the MoE router: the moe-debug preset with and without its auxiliary loss.

Usage: /usr/bin/python3 benchmarks/moe_balance_bench.py [--steps 150] [--last 20]
Needs build/launch/pretrain and the default corpus (scripts/build_default_corpus.sh).

Runs `build/launch/pretrain launch/configs/moe-debug.ini` twice on the default corpus for
--steps steps: once as the preset is (moe.aux_loss 0.01) and once with --moe.aux_loss 0
(the router z-loss stays on in both, so only the balancing term differs). No validation,
checkpoints or sample: the runs only train. For each run and MoE layer it prints the
busiest expert's load over the mean load (kept assignments, launch/moe_metrics.cpp),
averaged over the last --last train records (one per step), the same ratio of the
counts summed over those steps (less noisy: per-step maxima are biased upward), the
least loaded expert's min/mean and the assignments dropped.
Acceptance (issue 13): with the auxiliary loss max/mean < 1.5 in every layer; without,
visibly imbalanced.

Writes build/bench/moe_balance.json, the heat maps of scripts/plot_moe.py under
build/bench/moe_balance/, and a final line `RESULT moe_balance {json}`.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import plot_moe  # noqa: E402

RUNS = [("aux", []), ("no_aux", ["--moe.aux_loss", "0"])]


def train(name, extra, steps, out):
    run_dir = os.path.join(out, name)
    if os.path.isdir(run_dir):
        # A stale metrics.jsonl would be appended to; start each run clean.
        subprocess.run(["rm", "-rf", run_dir], check=True)
    cmd = [os.path.join(ROOT, "build/launch/pretrain"), "launch/configs/moe-debug.ini",
           "--train.steps", str(steps), "--run.dir", run_dir, "--eval.every", "0",
           "--run.checkpoint_every", "0", "--run.save_final", "false", "--sample.tokens", "0",
           "--run.log_every", "25"] + extra
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return run_dir, " ".join(shlex.quote(c) for c in cmd), time.time() - t0


def summarise(run_dir, last):
    steps = plot_moe.read_moe_steps(run_dir)
    tail = steps[-last:]
    per_step = plot_moe.layer_imbalance(steps, last)
    summed = {}
    for l in per_step:
        total = None
        for _, rec in tail:
            total = list(rec[l]) if total is None else [a + b for a, b in zip(total, rec[l])]
        summed[l] = plot_moe.max_over_mean(total)
    # Capacity caps what an expert keeps (moe-debug: 1.25 x its even share per sequence),
    # so an unbalanced router shows as much in the assignments dropped as in the loads.
    dropped = plot_moe.read_moe_steps(run_dir, "dropped_fraction")[-last:]
    # ... and in the least loaded expert, which capacity does not hide.
    least = {l: sum(min(plot_moe.relative_load(rec[l])) for _, rec in tail) / len(tail) for l in per_step}
    return {"steps": len(steps), "max_over_mean": {str(l): round(v, 4) for l, v in per_step.items()},
            "min_over_mean": {str(l): round(v, 4) for l, v in least.items()},
            "max_over_mean_of_sums": {str(l): round(v, 4) for l, v in summed.items()},
            "dropped_fraction": {str(l): round(sum(rec[l] for _, rec in dropped) / len(dropped), 4)
                                 for l in per_step}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--last", type=int, default=20, help="train records averaged at the end")
    ap.add_argument("--out", default=os.path.join(ROOT, "build/bench/moe_balance"))
    ap.add_argument("--reuse", action="store_true",
                    help="summarise and plot the runs already in --out instead of training again")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    result = {"preset": "launch/configs/moe-debug.ini", "steps": a.steps, "last": a.last, "runs": {}}
    for name, extra in RUNS:
        if a.reuse:
            run_dir, cmd, secs = os.path.join(a.out, name), "(reused)", 0.0
        else:
            run_dir, cmd, secs = train(name, extra, a.steps, a.out)
        s = summarise(run_dir, a.last)
        s.update(command=cmd, seconds=round(secs, 1), load_average=os.getloadavg()[0],
                 plots=plot_moe.plot_moe_run(run_dir, name, a.out))
        result["runs"][name] = s

    aux, no_aux = result["runs"]["aux"], result["runs"]["no_aux"]
    print("\nmax/mean expert load, mean over the last %d steps of %d (ratio of the summed counts), "
          "min/mean, assignments dropped:" % (a.last, a.steps))
    print("%-6s %-36s %-36s" % ("layer", "aux_loss 0.01", "aux_loss 0"))

    def cell(r, l):
        return "%.3f (%.3f), %.3f, %.1f%%" % (r["max_over_mean"][l], r["max_over_mean_of_sums"][l],
                                              r["min_over_mean"][l], 100 * r["dropped_fraction"][l])
    for l in aux["max_over_mean"]:
        print("%-6s %-36s %-36s" % (l, cell(aux, l), cell(no_aux, l)))
    result["aux_max"] = max(aux["max_over_mean"].values())
    result["no_aux_max"] = max(no_aux["max_over_mean"].values())
    result["aux_below_1_5"] = result["aux_max"] < 1.5
    path = os.path.join(ROOT, "build/bench/moe_balance.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", path)
    print("RESULT moe_balance %s" % json.dumps({
        "steps": a.steps, "last": a.last,
        "aux": aux["max_over_mean"], "no_aux": no_aux["max_over_mean"],
        "aux_min": aux["min_over_mean"], "no_aux_min": no_aux["min_over_mean"],
        "aux_dropped": aux["dropped_fraction"], "no_aux_dropped": no_aux["dropped_fraction"],
        "aux_max": result["aux_max"], "no_aux_max": result["no_aux_max"],
        "aux_below_1_5": result["aux_below_1_5"]}))


if __name__ == "__main__":
    main()
