#!/usr/bin/python3
"""Tensor-parallel benchmark: step time, TP bytes per rank per step against the analytic
count, and the share of the step spent in TP communication, per layout (tp, with and
without sequence parallelism) on one fixed model (issue 11, acceptance 7).

Usage: /usr/bin/python3 benchmarks/tp_bench.py [--tp 1 2] [--steps 6]
       (--tp 4 8 on a machine with the cores: one core per rank)

Each layout is one pretrain run on tp CPU ranks of this machine, one core each
(train.threads 1, OMP_NUM_THREADS=1), synthetic data, no evaluation. From metrics.jsonl:
  step ms     median of the train records' step_ms after the first step (rank 0's);
  tp comm     the share of those steps rank 0 spent inside TP collectives: the train
              records' tp_comm_ms (parallel/tensor/tp_regions.h: wall time around each
              blocking TpRegion collective, bf16 staging included), over step_ms. It is
              the time a rank is held by the collective, so it includes waiting for the
              slowest rank of the group (skew), not only moving bytes. The grad-norm's
              one-float TP sum in DataParallel is outside TpRegion and not timed (its
              bytes are counted);
  bytes       the comm_bytes record's tp_* per step (the Communicator's ring counts)
              beside the formula derived below. Per micro-batch of N = B*T rows, C
              channels, L layers, fp32, n = tp; one all-gather or reduce-scatter of an
              [N, C] activation moves s = (n-1)/n * N*C*4 bytes per rank, a ring
              all-reduce 2s:
   without SP  all-reduces: per layer 2 forward (after attn.proj and mlp.proj, the
               row-parallel outputs) + 2 backward (the input gradients of qkv and fc,
               the column-parallel inputs), plus the embedding's output (each rank
               looked up its vocabulary rows) and the head's input gradient:
               (4L + 2) * 2s;
   with SP     all-gathers: per layer 2 forward (before qkv and fc) + 2 backward (the
               output gradient before each row-parallel backward) + 2 more backward
               (each column-parallel input gathered again for its weight gradient: the
               block keeps only its rows), plus the embedding's output gradient and the
               head's input: (6L + 2) * s. Reduce-scatters: per layer 2 forward + 2
               backward, plus the embedding's output and the head's input gradient:
               (4L + 2) * s. Once per step: the replicated LayerNorms' gradients
               all-reduced, (2 per layer + lnf) * 2C floats: 2 (n-1)/n (4CL + 2C) * 4;
   both        the vocabulary-parallel cross-entropy's statistics all-gathered, 3 floats
               per row (max, sum-exp, target logit) from every other rank:
               (n-1) * 3N * 4; and once per step the grad norm's sharded part summed
               over TP as one float pair: 2 (n-1)/n * 8.
JSON to build/bench/tp_bench.json, the plot beside it (plot_tp.py). More ranks than cores
oversubscribe: the ranks then take turns on a core and the times measure the scheduler.
Timings are numbers to read, never asserted.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = bc.TP_OPS


def run_layout(a, n, sp):
    flags = ["--model.preset", "tiny", "--model.n_layer", a.layers, "--model.n_head", a.heads,
             "--model.n_embd", a.embd, "--model.vocab_size", a.vocab, "--model.block_size", a.seq,
             "--train.seq_len", a.seq, "--train.micro_batch", a.batch, "--train.grad_accum", a.micro,
             "--train.steps", a.steps, "--train.warmup", 2, "--parallel.tp", n,
             "--parallel.sp", "true" if sp else "false"]
    with tempfile.TemporaryDirectory(prefix="tp_bench_") as run_dir:
        cmd, train, others = bc.run_local_pretrain(a.pretrain, n, flags, run_dir)
    later = train[1:]  # the first step allocates and tunes
    step_ms = statistics.median(r["step_ms"] for r in later)
    comm_ms = statistics.median(r.get("tp_comm_ms", 0.0) for r in later)
    share = statistics.mean(r.get("tp_comm_ms", 0.0) / r["step_ms"] for r in later)
    cb = others["comm_bytes"]
    steps = cb["steps"]
    measured = {op: cb["tp_%s_bytes" % op] / steps for op in OPS}
    want = bc.tp_bytes_per_step(n, sp, a.layers, a.embd, a.batch * a.seq, a.micro)
    return {"tp": n, "sp": sp, "step_ms": step_ms, "tp_comm_ms": comm_ms, "tp_comm_share": share,
            "bytes_per_step": measured, "formula_bytes_per_step": want,
            "dp_bytes_per_step": sum(cb["dp_%s_bytes" % op] for op in OPS) / steps,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in later),
            "command": " ".join(shlex.quote(str(c)) for c in cmd)}


def main():
    bench_dir = os.path.join(ROOT, "build", "bench")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tp", type=int, nargs="+", default=[1, 2], help="TP ranks (one core each)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="sequences per micro-batch")
    ap.add_argument("--micro", type=int, default=2, help="micro-batches per step")
    ap.add_argument("--steps", type=int, default=6, help="steps per run; the first is left out")
    ap.add_argument("--pretrain", default=os.path.join(ROOT, "build", "launch", "pretrain"))
    ap.add_argument("--json", default=os.path.join(bench_dir, "tp_bench.json"))
    a = ap.parse_args()
    bc.require_executable(a.pretrain, "tp_bench")
    cores = os.cpu_count() or 1
    if max(a.tp) > cores:
        print("tp_bench: warning: %d ranks on %d cores oversubscribe; their times measure the OS scheduler"
              % (max(a.tp), cores), file=sys.stderr)
    rows = []
    print("model: %d layers, %d heads, C %d, V %d, T %d, B %d x %d micro-batches; fp32, one core per rank"
          % (a.layers, a.heads, a.embd, a.vocab, a.seq, a.batch, a.micro))
    print("%-9s %9s %9s %6s | %-34s | %-34s" % ("layout", "step ms", "TP ms", "TP %",
                                               "TP bytes/step: AR / RS / AG (MB)", "formula AR / RS / AG (MB)"))
    for n in a.tp:
        for sp in ((False, True) if n > 1 else (False,)):
            r = run_layout(a, n, sp)
            rows.append(r)
            m, f = r["bytes_per_step"], r["formula_bytes_per_step"]
            print("%-9s %9.1f %9.1f %5.1f%% | %-34s | %-34s" % (
                "tp%d%s" % (n, "+sp" if sp else ""), r["step_ms"], r["tp_comm_ms"], 100 * r["tp_comm_share"],
                " / ".join("%.4f" % (m[op] / 1e6) for op in OPS), " / ".join("%.4f" % (f[op] / 1e6) for op in OPS)))
    res = {"bench": "tp_bench", "cores": cores, "model": {k: getattr(a, k) for k in (
        "layers", "heads", "embd", "vocab", "seq", "batch", "micro", "steps")}, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print("tp_bench: %s" % a.json)
    try:
        import plot_tp
        print("tp_bench: plot %s" % plot_tp.plot_file(a.json))
    except Exception as e:  # matplotlib missing: the JSON is the result
        print("tp_bench: no plot (%s)" % e)
    worst = max((abs(r["bytes_per_step"][op] - r["formula_bytes_per_step"][op]) /
                 max(r["formula_bytes_per_step"][op], 1.0) for r in rows for op in OPS), default=0.0)
    print("RESULT tp_bench %s" % json.dumps({"layouts": len(rows), "max_bytes_vs_formula": worst},
                                            separators=(",", ":")))


if __name__ == "__main__":
    main()
