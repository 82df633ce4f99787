#!/usr/bin/python3
"""Bar charts of training throughput, ours beside PyTorch, from the benchmark JSONs.

Usage: /usr/bin/python3 benchmarks/plot_bench.py [JSON ...] [-o build/bench/]

Reads what cpu_train_bench.py and gpu_train_bench.py write (default: both under
build/bench/, whichever exist) and writes <json name>.png into -o: per model, two bars
(tokens/s of ours and of PyTorch), each labelled with its value, the ratio above the
pair and, for the GPU bench, MFU inside the bars. Models differ by orders of magnitude
in tokens/s, so each model gets its own panel and y scale. Agg backend: no display needed.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIDES = (("ours", "ours (pretrain)", "#1f77b4"), ("torch", "PyTorch", "#ff7f0e"))


def subtitle(res):
    if res.get("bench") == "cpu_train_bench":
        return "CPU, %s threads, %s" % (res.get("threads"), res.get("machine", ""))
    parts = [res.get("device_name", res.get("device", "")), res.get("dtype", ""),
             "B=%s T=%s" % (res.get("B"), res.get("T"))]
    if res.get("recompute", "none") != "none":
        parts.append("recompute=" + res["recompute"])
    return ", ".join(p for p in parts if p)


def plot(res, out_path):
    models = list(res.get("models", {}).items())
    if not models:
        sys.exit("plot_bench: %s has no models" % res.get("bench"))
    fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models) + 1.5, 4.6), dpi=110,
                             squeeze=False)
    for ax, (name, r) in zip(axes[0], models):
        top = 0.0
        for i, (side, label, colour) in enumerate(SIDES):
            v = r.get(side + "_tokens_per_s")
            if v is None:  # skipped or failed (say, out of memory): an empty slot, marked
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                continue
            ax.bar(i, v, color=colour, width=0.7, label=label)
            ax.text(i, v, "%.0f" % v, ha="center", va="bottom", fontsize=8)
            mfu = r.get(side + "_mfu")
            if mfu is not None:
                ax.text(i, v / 2, "MFU\n%.1f%%" % (100 * mfu), ha="center", va="center",
                        fontsize=8, color="white")
            top = max(top, v)
        ratio = r.get("ratio_ours_over_torch")
        ax.set_title(name + ("\nours/torch %.2fx" % ratio if ratio else "\n"), fontsize=10)
        ax.set_xticks(range(len(SIDES)))
        ax.set_xticklabels([s[0] for s in SIDES])
        ax.set_xlim(-0.7, len(SIDES) - 0.3)
        ax.set_ylim(0, top * 1.15 if top else 1)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("tokens/s (median step)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=2,
               frameon=False)
    fig.suptitle("%s: %s" % (res.get("bench", "benchmark"), subtitle(res)), fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out_path)
    plt.close(fig)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench_dir = os.path.join(root, "build", "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="*", help="benchmark JSONs (default: %s/{cpu,gpu}_train_bench"
                                            ".json, those that exist)" % bench_dir)
    ap.add_argument("-o", "--out-dir", default=bench_dir)
    a = ap.parse_args()
    paths = a.json or [p for p in (os.path.join(bench_dir, n + "_train_bench.json")
                                   for n in ("cpu", "gpu")) if os.path.isfile(p)]
    if not paths:
        sys.exit("plot_bench: no benchmark JSON given or found in %s" % bench_dir)
    os.makedirs(a.out_dir, exist_ok=True)
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        # Named after the JSON, so runs of one bench (bf16 and fp32, say) do not collide.
        out = os.path.join(a.out_dir, os.path.splitext(os.path.basename(p))[0] + ".png")
        plot(res, out)
        print("plot_bench: %s -> %s" % (p, out))


if __name__ == "__main__":
    main()
