#!/usr/bin/python3
"""Plot of tp_bench's JSON: per layout, the step time split into TP communication and the
rest (bars), and the TP bytes per step measured against the formula (right).

Usage: /usr/bin/python3 benchmarks/plot_tp.py [build/bench/tp_bench.json]
Writes <json name>.png beside it. Agg backend: no display needed.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_file(path):
    with open(path) as f:
        res = json.load(f)
    rows = res["rows"]
    names = ["tp%d%s" % (r["tp"], "+sp" if r["sp"] else "") for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    comm = [r["tp_comm_ms"] for r in rows]
    rest = [r["step_ms"] - r["tp_comm_ms"] for r in rows]
    ax.bar(names, rest, label="compute and the rest")
    ax.bar(names, comm, bottom=rest, label="TP collectives (rank 0)")
    ax.set_ylabel("step time (ms, median)")
    ax.set_title("step time, one core per rank")
    ax.legend()
    x = range(len(rows))
    meas = [sum(r["bytes_per_step"].values()) / 1e6 for r in rows]
    want = [sum(r["formula_bytes_per_step"].values()) / 1e6 for r in rows]
    bx.bar([i - 0.2 for i in x], meas, width=0.4, label="measured (Communicator)")
    bx.bar([i + 0.2 for i in x], want, width=0.4, label="formula")
    bx.set_xticks(list(x))
    bx.set_xticklabels(names)
    bx.set_ylabel("TP MB per rank per step")
    bx.set_title("TP traffic")
    bx.legend()
    fig.tight_layout()
    out = os.path.splitext(path)[0] + ".png"
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot_file(sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "bench", "tp_bench.json")))
