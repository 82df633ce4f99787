#!/usr/bin/python3
"""bf16 mixed precision against fp32 on a real corpus: the same model, seed and data.

A check with numbers, run where the model is big enough to matter (GPT-2 124M on the
default corpus on a GPU; the CPU tests run small shapes):

  python3 benchmarks/bf16_curve.py [--pretrain build/launch/pretrain]
      [--config launch/configs/gpt2-124M.ini] [--steps 300] [--every 50]
      [--tolerance 0.02] [--repeat] [--out build/bench/bf16_curve.json] [-- PRETRAIN ARGS]

Trains `steps` steps with train.dtype fp32, then bf16 (and, with --repeat, bf16 again,
which must give bit-identical losses), no evaluation, checkpoints or sample. Prints the
train loss of both at every `every`-th step with their relative difference, writes the
JSON (and a PNG of both curves when matplotlib is there), and exits 1 when a difference
exceeds the tolerance or the repeat differs. The data comes from the config's
data.mixture (build the default corpus first: scripts/build_default_corpus.sh).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def parse_args():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain", default=os.path.join(root, "build", "launch", "pretrain"))
    ap.add_argument("--config", default=os.path.join(root, "launch", "configs", "gpt2-124M.ini"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--repeat", action="store_true", help="a second bf16 run must match bit for bit")
    ap.add_argument("--out", default=os.path.join(root, "build", "bench", "bf16_curve.json"))
    ap.add_argument("extra", nargs="*", help="more pretrain arguments (after --)")
    return ap.parse_args()


def train(a, dtype, work):
    """Runs pretrain; returns {step: loss} from its metrics.jsonl and the wall time."""
    run_dir = os.path.join(work, dtype + "_" + str(len(os.listdir(work))))
    cmd = [a.pretrain, a.config, "--train.steps", str(a.steps), "--train.dtype", dtype,
           "--run.dir", run_dir, "--eval.every", "0", "--run.checkpoint_every", "0",
           "--run.save_final", "false", "--sample.tokens", "0",
           "--run.log_every", str(a.every)] + a.extra
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout[-3000:], flush=True)
    if proc.returncode != 0:
        sys.exit("bf16_curve: pretrain (%s) failed with exit code %d" % (dtype, proc.returncode))
    losses = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "train":
                losses[int(rec["step"])] = rec["loss"]
    if len(losses) != a.steps:
        sys.exit("bf16_curve: %s run logged %d of %d steps" % (dtype, len(losses), a.steps))
    return losses, time.time() - t0


def main():
    a = parse_args()
    with tempfile.TemporaryDirectory(prefix="bf16_curve_") as work:
        fp32, t32 = train(a, "fp32", work)
        bf16, t16 = train(a, "bf16", work)
        again = train(a, "bf16", work)[0] if a.repeat else None
    rows, worst, ok = [], 0.0, True
    print("%6s %12s %12s %9s" % ("step", "fp32", "bf16", "rel diff"))
    for s in range(a.every, a.steps + 1, a.every):
        rel = abs(bf16[s] - fp32[s]) / abs(fp32[s])
        worst = max(worst, rel)
        ok &= rel <= a.tolerance
        rows.append({"step": s, "fp32": fp32[s], "bf16": bf16[s], "rel_diff": rel})
        print("%6d %12.6f %12.6f %8.3f%%%s" % (s, fp32[s], bf16[s], 100 * rel,
                                              "" if rel <= a.tolerance else "  > tolerance"))
    result = {"config": a.config, "steps": a.steps, "every": a.every, "tolerance": a.tolerance,
              "worst_rel_diff": worst, "within_tolerance": ok, "rows": rows,
              "seconds": {"fp32": t32, "bf16": t16}, "extra_args": a.extra}
    if again is not None:
        result["bf16_repeat_bit_identical"] = again == bf16
        ok &= again == bf16
        print("second bf16 run: %s" % ("bit-identical losses" if again == bf16 else
                                        "DIFFERENT losses (not deterministic)"))
    print("worst relative difference %.3f%% (tolerance %.1f%%): %s"
          % (100 * worst, 100 * a.tolerance, "PASS" if ok else "FAIL"))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    result["curves"] = {"fp32": [fp32[s] for s in sorted(fp32)], "bf16": [bf16[s] for s in sorted(bf16)]}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    plot(result, os.path.splitext(a.out)[0] + ".png")
    print("RESULT bf16_curve " + json.dumps({k: result[k] for k in ("worst_rel_diff", "within_tolerance")}))
    return 0 if ok else 1


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("fp32", "bf16"):
        ys = result["curves"][name]
        ax.plot(range(1, len(ys) + 1), ys, label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title("bf16 vs fp32, worst difference at every %d steps: %.2f%%"
                 % (result["every"], 100 * result["worst_rel_diff"]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
