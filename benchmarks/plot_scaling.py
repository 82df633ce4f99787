#!/usr/bin/python3
"""Plots of the communication and scaling benchmarks' JSONs.

Usage: /usr/bin/python3 benchmarks/plot_scaling.py [JSON ...] [-o build/bench/]

comm_bench JSON    -> bus bandwidth (GB/s) vs message size, one line per operation
                      (and per backend, MPI solid, NCCL dashed), log-log.
scaling_bench JSON -> step time and tokens/s vs ranks, measured (solid, dots) and the
                      perf model's prediction on the calibrated `local` cluster (dashed),
                      one colour per layout and scaling; dotted: the measured step times
                      CPU share (the core-normalised time, where ranks shared their cores).
Default: build/bench/comm_bench.json and build/bench/scaling_bench.json, those that exist.
Writes <json name>.png into -o. Agg backend: no display needed.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OPS = ("allreduce", "reduce_scatter", "allgather", "all_to_all", "sendrecv")


def plot_comm(res, out_path):
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for key, style in (("mpi", "-"), ("nccl_rows", "--")):
        rows = res.get(key) or []
        for i, op in enumerate(OPS):
            pts = [(r["bytes"], r["busbw_gbps"]) for r in rows if r["op"] == op and r.get("correct")]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=".", color="C%d" % i,
                        label="%s %s" % ("MPI" if key == "mpi" else "NCCL", op))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message bytes (whole buffer)")
    ax.set_ylabel("bus bandwidth, GB/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    cal = res.get("calibration") or {}
    ax.set_title("comm_bench: %s ranks, fp32%s" % (
        res.get("ranks"), "; all-reduce fit %.3g GB/s, %.0f us/step" % (
            cal["intra_gbps"], cal["intra_latency_us"]) if cal else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def plot_scaling(res, out_path):
    rows = res.get("rows", [])
    series = {}
    for r in rows:
        series.setdefault((r["layout"], r["scaling"]), []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    for i, ((layout, scaling), rs) in enumerate(sorted(series.items())):
        rs.sort(key=lambda r: r["ranks"])
        n = [r["ranks"] for r in rs]
        colour, label = "C%d" % i, "%s, %s" % (layout, scaling)
        axes[0].plot(n, [r["step_ms"] for r in rs], "-o", color=colour, label=label + " measured")
        axes[0].plot(n, [r["predicted_step_ms"] for r in rs], "--", color=colour, label=label + " predicted")
        if all("core_step_ms" in r for r in rs):
            axes[0].plot(n, [r["core_step_ms"] for r in rs], ":", marker="x", color=colour,
                         label=label + " measured x CPU share")
        axes[1].plot(n, [r["tokens_per_s"] for r in rs], "-o", color=colour, label=label + " measured")
        axes[1].plot(n, [r["predicted_tokens_per_s"] for r in rs], "--", color=colour)
    for ax, ylabel in zip(axes, ("step time, ms (median)", "tokens/s")):
        ax.set_xlabel("ranks (one core each)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(sorted({r["ranks"] for r in rows}))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("scaling_bench: %s; predicted = plan on the calibrated 'local' cluster" % res.get("model", ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def plot_file(path, out_dir):
    with open(path) as f:
        res = json.load(f)
    out = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
    kind = res.get("bench")
    if kind == "comm_bench":
        plot_comm(res, out)
    elif kind == "scaling_bench":
        plot_scaling(res, out)
    else:
        sys.exit("plot_scaling: %s is neither a comm_bench nor a scaling_bench JSON" % path)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench_dir = os.path.join(root, "build", "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="*")
    ap.add_argument("-o", "--out-dir", default=bench_dir)
    a = ap.parse_args()
    paths = a.json or [p for p in (os.path.join(bench_dir, n + ".json") for n in ("comm_bench", "scaling_bench"))
                       if os.path.isfile(p)]
    if not paths:
        sys.exit("plot_scaling: no benchmark JSON given or found in %s" % bench_dir)
    os.makedirs(a.out_dir, exist_ok=True)
    for p in paths:
        print("plot_scaling: %s -> %s" % (p, plot_file(p, a.out_dir)))


if __name__ == "__main__":
    main()
