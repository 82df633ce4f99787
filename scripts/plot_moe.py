#!/usr/bin/python3
"""Per-expert load charts of mixture-of-experts runs, from their metrics.jsonl.

Usage: /usr/bin/python3 scripts/plot_moe.py runs/moe-debug [runs/other ...] [-o plots/]
(scripts/plot_runs.py calls the same functions for every MoE run it is given.)

Every "train" record of an MoE run has, per MoE layer (launch/moe_metrics.cpp),
  "moe_layers": [{"layer": l, "tokens_per_expert": [n_0, ..., n_E-1], "dropped": d,
                  "assignments": a, "dropped_fraction": d / a}, ...]
summed over the step's micro-batches and data-parallel ranks. An expert's load is its
kept assignments n_e; the balance measure is n_e / mean_e(n_e), so 1 everywhere is a
perfectly even router and max/mean is how many times its fair share the busiest expert
got (dropped assignments are not load: capacity turned them away).

Writes per run moe_load_<run>.png, a heat map with one row per (layer, expert), steps
along x and colour load / mean load (centred on 1 on a log scale, so 0.5x and 2x are
equally far from even), and moe_imbalance_<run>.png, max/mean load per layer against
the step. matplotlib's Agg backend: no display needed.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def read_moe_steps(run_dir, field="tokens_per_expert"):
    """[(step, {layer: record[field]}), ...] in file order ([] for a dense run): by
    default each layer's kept assignments per expert [n_e, ...]."""
    path = os.path.join(run_dir, "metrics.jsonl")
    steps = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a run killed mid-write leaves a partial last line
            if rec.get("kind") != "train" or "moe_layers" not in rec:
                continue
            steps.append((rec["step"], {l["layer"]: l[field] for l in rec["moe_layers"]}))
    return steps


def relative_load(counts):
    """Each expert's kept assignments over the mean of the layer's experts (1 = even)."""
    mean = sum(counts) / len(counts)
    return [c / mean if mean > 0 else 0.0 for c in counts]


def max_over_mean(counts):
    return max(relative_load(counts))


def layer_imbalance(steps, last=20):
    """{layer: mean over the last `last` records of max/mean load}."""
    tail = steps[-last:]
    layers = sorted({l for _, rec in tail for l in rec})
    return {l: sum(max_over_mean(rec[l]) for _, rec in tail if l in rec) /
            sum(1 for _, rec in tail if l in rec) for l in layers}


def plot_heatmap(steps, name, out_dir):
    layers = sorted({l for _, rec in steps for l in rec})
    experts = {l: len(next(rec[l] for _, rec in steps if l in rec)) for l in layers}
    rows = [(l, e) for l in layers for e in range(experts[l])]
    xs = [s for s, _ in steps]
    grid = [[relative_load(rec[l])[e] if l in rec else float("nan") for _, rec in steps] for l, e in rows]
    # LogNorm cannot show 0 (an expert that got nothing): floor it at the colour range's end.
    lo, hi = 1 / 4, 4
    grid = [[min(max(v, lo), hi) if v == v else v for v in row] for row in grid]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.28 * len(rows)), dpi=110)
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                   norm=LogNorm(vmin=lo, vmax=hi), extent=(xs[0] - 0.5, xs[-1] + 0.5, len(rows) - 0.5, -0.5))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(["L%d E%d" % r for r in rows], fontsize=7)
    for i in range(1, len(layers)):  # a line between layers
        ax.axhline(sum(experts[l] for l in layers[:i]) - 0.5, color="black", lw=0.8)
    ax.set_xlabel("step")
    ax.set_title("%s: expert load / mean load per MoE layer (clipped to [1/4, 4])" % name)
    cb = fig.colorbar(im, ax=ax)
    cb.set_ticks([0.25, 0.5, 1, 2, 4])
    cb.set_ticklabels(["0.25", "0.5", "1", "2", "4"])
    return save(fig, out_dir, "moe_load_%s.png" % name)


def plot_imbalance(steps, name, out_dir):
    layers = sorted({l for _, rec in steps for l in rec})
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for i, l in enumerate(layers):
        pts = [(s, max_over_mean(rec[l])) for s, rec in steps if l in rec]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="C%d" % (i % 10), lw=1.0, label="layer %d" % l)
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("max / mean expert load")
    ax.set_title("%s: load imbalance per MoE layer" % name)
    ax.set_ylim(bottom=0.9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save(fig, out_dir, "moe_imbalance_%s.png" % name)


def save(fig, out_dir, name):
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    fig.savefig(path)
    plt.close(fig)
    print("wrote", path)
    return path


def plot_moe_run(run_dir, name, out_dir):
    """Both charts for one run; returns their paths ([] for a run without MoE records)."""
    steps = read_moe_steps(run_dir)
    if not steps:
        return []
    return [plot_heatmap(steps, name, out_dir), plot_imbalance(steps, name, out_dir)]


def main():
    ap = argparse.ArgumentParser(description="Per-expert load charts of MoE runs.")
    ap.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    ap.add_argument("-o", "--out", default="plots", help="output directory for PNGs")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for r in a.runs:
        if not os.path.isfile(os.path.join(r, "metrics.jsonl")):
            sys.exit("plot_moe: %s has no metrics.jsonl" % r)
        if not plot_moe_run(r, os.path.basename(os.path.normpath(r)), a.out):
            print("plot_moe: %s has no MoE records (a dense run?)" % r, file=sys.stderr)


if __name__ == "__main__":
    main()
