#!/usr/bin/python3
"""Plots of pipeline parallelism: a schedule's Gantt chart and the bench's bubbles.

Usage: /usr/bin/python3 benchmarks/plot_pipeline.py JSON [JSON ...] [-o DIR]

Chrome-trace timeline (pretrain --parallel.timeline FILE)
    -> Gantt chart of the step: one row per rank, a box per compute pass coloured by
       kind (F forward, B backward, Bi input gradient, W weight gradient), the
       micro-batch number in it (".c" and the chunk when a rank holds several), white
       where the rank waited; each rank's idle share in its label.
pipeline_bench JSON -> the bubble against m, one colour per schedule, one panel per
       pipeline size p: measured over the last step's trace (solid, dots), pretrain's
       metric (faint, crosses), the formula (dashed) and the simulator with the run's
       mean pass costs (dotted).
Writes <json name>.png into -o (default: beside the JSON). Agg backend: no display needed.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PASS_COLOURS = {"F": "#4c72b0", "B": "#dd8452", "Bi": "#c44e52", "W": "#55a868"}
SCHEDULE_COLOURS = {"gpipe": "C0", "1f1b": "C1", "interleaved": "C2", "zb-h1": "C3"}


def plot_timeline(trace, out_path, title):
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    ranks = sorted({e["tid"] for e in events})
    end = max(e["ts"] + e["dur"] for e in events) / 1e3
    chunked = len({e["args"]["chunk"] for e in events}) > len(ranks)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.35 * len(events) / len(ranks) + 4), 1.0 + 0.6 * len(ranks)), dpi=110)
    labels = []
    for row, rank in enumerate(ranks):
        mine = [e for e in events if e["tid"] == rank]
        busy = sum(e["dur"] for e in mine) / 1e3
        labels.append("rank %d\nidle %.0f%%" % (rank, 100 * (1 - busy / end)))
        for e in mine:
            x, w = e["ts"] / 1e3, e["dur"] / 1e3
            ax.broken_barh([(x, w)], (row - 0.4, 0.8), facecolors=PASS_COLOURS.get(e["cat"], "grey"),
                           edgecolors="black", linewidth=0.4)
            text = str(e["args"]["micro"]) + (".c%d" % e["args"]["chunk"] if chunked else "")
            ax.text(x + w / 2, row, text, ha="center", va="center", fontsize=7, color="white", clip_on=True)
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, end)
    ax.set_xlabel("ms since the step's start (each rank's own clock)")
    kinds = sorted({e["cat"] for e in events}, key=list(PASS_COLOURS).index)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=PASS_COLOURS[k]) for k in kinds], labels=kinds,
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def plot_bubbles(res, out_path):
    rows = res["rows"]
    stages = sorted({r["p"] for r in rows})
    fig, axes = plt.subplots(1, len(stages), figsize=(6.0 * len(stages), 4.4), dpi=110, squeeze=False)
    for ax, p in zip(axes[0], stages):
        for schedule, colour in SCHEDULE_COLOURS.items():
            rs = sorted((r for r in rows if r["p"] == p and r["schedule"] == schedule), key=lambda r: r["m"])
            if not rs:
                continue
            m = [r["m"] for r in rs]
            name = schedule + (" v=%d" % rs[0]["v"] if rs[0]["v"] > 1 else "")
            ax.plot(m, [100 * r["trace_bubble"] for r in rs], "-o", color=colour, label=name)
            ax.plot(m, [100 * r["bubble"] for r in rs], "-x", color=colour, alpha=0.4, linewidth=0.8)
            ax.plot(m, [100 * r["formula_bubble"] for r in rs], "--", color=colour)
            ax.plot(m, [100 * r["sim_bubble"] for r in rs], ":", color=colour)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["m"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("micro-batches per step m")
        ax.set_ylabel("bubble (idle share of the step), %")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.set_title("p = %d" % p, fontsize=9)
        styles = [plt.Line2D([], [], color="grey", linestyle=ls, marker=mk, alpha=al) for ls, mk, al in
                  (("-", "o", 1), ("-", "x", 0.4), ("--", "", 1), (":", "", 1))]
        kinds = ax.legend(styles, ["measured, last step's trace", "measured, pretrain's metric", "formula",
                                   "simulator, measured pass costs"], fontsize=7, loc="upper right")
        ax.add_artist(kinds)
        ax.legend(fontsize=7, loc="lower left")
    model = res.get("model", {})
    fig.suptitle("pipeline_bench on %d cores: L=%s C=%s, %s x %s tokens per micro-batch" % (
        res.get("cores", 0), model.get("n_layer"), model.get("n_embd"), model.get("micro_batch"),
        model.get("seq_len")), fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def plot_file(path, out_dir=None):
    """Plots one JSON (a timeline or the bench's) to <out_dir>/<name>.png; returns that path."""
    with open(path) as f:
        doc = json.load(f)
    out = os.path.join(out_dir or os.path.dirname(os.path.abspath(path)),
                       os.path.splitext(os.path.basename(path))[0] + ".png")
    if "traceEvents" in doc:
        plot_timeline(doc, out, os.path.basename(path))
    elif doc.get("bench") == "pipeline_bench":
        plot_bubbles(doc, out)
    else:
        raise ValueError("%s: neither a Chrome-trace timeline nor a pipeline_bench JSON" % path)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("-o", "--out-dir", default=None)
    a = ap.parse_args()
    if a.out_dir:
        os.makedirs(a.out_dir, exist_ok=True)
    for path in a.json:
        print(plot_file(path, a.out_dir))


if __name__ == "__main__":
    main()
