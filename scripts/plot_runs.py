#!/usr/bin/python3
"""Turns the metrics.jsonl of one or more runs into PNG charts.

Usage: /usr/bin/python3 scripts/plot_runs.py runs/a runs/b [-o plots/] [--names a b]

Each run directory holds metrics.jsonl, one JSON object per line:
  {"kind":"start","params":N,"config":{...}}
  {"kind":"train","step":s,"loss":x,"lr":x,"grad_norm":x,"tokens":t,"tokens_per_s":x,"step_ms":x}
  {"kind":"val","step":s,"tokens":t,"val_loss":x,
   "source_loss":{"name":x,...},"source_tokens":{"name":n,...}}   (mixture runs)
Writes loss_vs_step.png, loss_vs_tokens.png (train solid, val dashed with markers),
val_by_source.png (mixture runs: one validation curve per source, the total bold),
throughput.png (tokens/s vs step) and lr_grad_norm.png; one colour per run, legend by
run name (the directory name unless --names is given). Each mixture-of-experts run also
gets moe_load_<name>.png (per-expert load heat map) and moe_imbalance_<name>.png (max/mean
load per layer), drawn by scripts/plot_moe.py. Uses matplotlib's Agg backend,
so it runs on machines without a display (Debian's python3-matplotlib).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_moe  # noqa: E402


def load_run(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        sys.exit("plot_runs: %s not found (is %s a run directory?)" % (path, run_dir))
    run = {"start": None, "train": [], "val": []}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                # A run killed mid-write leaves a partial last line: plot what is complete.
                print("plot_runs: %s:%d: skipped (%s)" % (path, lineno, e), file=sys.stderr)
                continue
            kind = rec.get("kind")
            if kind == "start":
                run["start"] = rec
            elif kind in ("train", "val"):
                run[kind].append(rec)
    return run


def series(records, x, y):
    pts = [(r[x], r[y]) for r in records if x in r and y in r and r[y] is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def new_axes(title, xlabel, ylabel):
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig, ax, out_dir, name):
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    fig.savefig(path)
    plt.close(fig)
    print("wrote", path)


def plot_loss(runs, out_dir, x, xlabel, name):
    fig, ax = new_axes("Loss vs " + xlabel.split(" ")[0].lower(), xlabel, "cross-entropy loss")
    for i, (label, run) in enumerate(runs):
        color = "C%d" % (i % 10)
        xs, ys = series(run["train"], x, "loss")
        ax.plot(xs, ys, color=color, lw=1.2, label=label + " train")
        xs, ys = series(run["val"], x, "val_loss")
        if xs:
            ax.plot(xs, ys, color=color, ls="--", marker="o", ms=4, label=label + " val")
    save(fig, ax, out_dir, name)


def plot_val_by_source(runs, out_dir):
    """One curve per (run, source); line style per run, colour per source."""
    fig, ax = new_axes("Validation loss by source", "step", "cross-entropy loss")
    styles = ["-", "--", ":", "-."]
    colors = {}
    for i, (label, run) in enumerate(runs):
        names = []
        for r in run["val"]:
            for n in r.get("source_loss", {}):
                if n not in names:
                    names.append(n)
        if not names:
            continue
        ls = styles[i % len(styles)]
        xs, ys = series(run["val"], "step", "val_loss")
        ax.plot(xs, ys, color="black", ls=ls, lw=2.0, label=label + " total")
        for n in names:
            color = colors.setdefault(n, "C%d" % (len(colors) % 10))
            pts = [(r["step"], r["source_loss"][n]) for r in run["val"]
                   if r.get("source_loss", {}).get(n) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, ls=ls, marker="o",
                    ms=3, lw=1.2, label="%s %s" % (label, n))
    if colors:
        save(fig, ax, out_dir, "val_by_source.png")
    else:
        plt.close(fig)


def plot_throughput(runs, out_dir, skip):
    fig, ax = new_axes("Throughput (first %d steps skipped: warm-up)" % skip, "step",
                       "tokens / s")
    for i, (label, run) in enumerate(runs):
        xs, ys = series(run["train"][skip:], "step", "tokens_per_s")
        mean = sum(ys) / len(ys) if ys else 0.0
        ax.plot(xs, ys, color="C%d" % (i % 10), lw=1.2, label="%s (mean %.0f)" % (label, mean))
    ax.set_ylim(bottom=0)
    save(fig, ax, out_dir, "throughput.png")


def plot_lr_grad_norm(runs, out_dir):
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), dpi=110, sharex=True)
    for i, (label, run) in enumerate(runs):
        color = "C%d" % (i % 10)
        ax1.plot(*series(run["train"], "step", "lr"), color=color, label=label)
        ax2.plot(*series(run["train"], "step", "grad_norm"), color=color, lw=1.0, label=label)
    ax1.set_ylabel("learning rate")
    ax2.set_ylabel("grad norm (before clipping)")
    ax2.set_xlabel("step")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    ax1.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "lr_grad_norm.png")
    fig.savefig(path)
    plt.close(fig)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description="Plot metrics.jsonl of training runs.")
    ap.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    ap.add_argument("-o", "--out", default="plots", help="output directory for PNGs")
    ap.add_argument("--names", nargs="*", help="legend names, one per run")
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps left out of throughput")
    a = ap.parse_args()
    if a.names and len(a.names) != len(a.runs):
        sys.exit("plot_runs: %d names for %d runs" % (len(a.names), len(a.runs)))
    names = a.names or [os.path.basename(os.path.normpath(r)) for r in a.runs]
    runs = [(n, load_run(r)) for n, r in zip(names, a.runs)]
    os.makedirs(a.out, exist_ok=True)
    plot_loss(runs, a.out, "step", "step", "loss_vs_step.png")
    plot_loss(runs, a.out, "tokens", "tokens (cumulative)", "loss_vs_tokens.png")
    plot_val_by_source(runs, a.out)
    plot_throughput(runs, a.out, a.skip)
    plot_lr_grad_norm(runs, a.out)
    for name, run_dir in zip(names, a.runs):
        plot_moe.plot_moe_run(run_dir, name, a.out)


if __name__ == "__main__":
    main()
