#!/usr/bin/python3
"""Per-op timings: each op of our ops table (benchmarks/op_bench) beside PyTorch's.

A benchmark, not a test: numbers are reported, never asserted. gpu_train_bench.py says
how a whole training step compares; this says WHICH op is slow. On a GPU machine:

  python3 benchmarks/gpu_op_bench.py [--op-bench build/benchmarks/op_bench] [--dtype bf16]
      [--B 16 --T 1024 --C 768 --NH 12 --V 50304 --L 12] [--iters 20 --warmup 3]
      [--ops matmul_forward,attention_backward] [--out build/bench/gpu_op_bench.json]

Ours: op_bench, one `OP {json}` line per op (its per-call mean between two device
synchronisations). PyTorch: the equivalent in this process on the same device, dtype and
shapes, timed the same way (warm-up calls, torch.cuda.synchronize, a timed loop,
synchronize). Backward ops are torch.autograd.grad over a graph kept with retain_graph,
so only the backward is timed. Where torch has no fused equivalent the unfused sequence
is timed and the note says so; where torch keeps parameter gradients in the activation
dtype (ours: F32) the note says that too. ratio = torch ms / ours ms: above 1, ours is
faster. GB/s (memory-bound ops) or TFLOP/s (matmuls, attention) are ours, from the nominal
bytes/FLOPs op_bench prints. Ends with `RESULT gpu_op_bench {json}` and writes --out.

CPU smoke run of the plumbing (torch 1.13 there has no SDPA: explicit softmax attention):
  /usr/bin/python3 benchmarks/gpu_op_bench.py --device cpu --dtype f32 --B 2 --T 64 --C 64 \
      --NH 4 --V 512 --L 2 --iters 2
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import fmt, require_executable  # noqa: E402

SHAPE_KEYS = ("B", "T", "C", "NH", "V", "L")


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--op-bench", default=os.path.join(root, "build", "benchmarks", "op_bench"))
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    for k, v in zip(SHAPE_KEYS, (16, 1024, 768, 12, 50304, 12)):
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--iters", type=int, default=20, help="timed calls per op")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per op")
    ap.add_argument("--ops", default="", help="comma list of op names or families (matmul_forward)")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--out", default=os.path.join(root, "build", "bench", "gpu_op_bench.json"))
    return ap.parse_args(argv)


def run_ours(a):
    """op_bench's OP records, by op name, and its header line."""
    require_executable(a.op_bench, "gpu_op_bench", "op_bench", "--op-bench")
    cmd = [a.op_bench, "--device", a.device, "--dtype", a.dtype, "--iters", str(a.iters),
           "--warmup", str(a.warmup)]
    for k in SHAPE_KEYS:
        cmd += ["--" + k, str(getattr(a, k))]
    if a.ops:
        cmd += ["--ops", a.ops]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    records, header = {}, ""
    for line in proc.stdout.splitlines():
        if line.startswith("OP "):
            r = json.loads(line[3:])
            records[r["op"]] = r
        elif line.startswith("op_bench:"):
            header = line
    if proc.returncode != 0:
        sys.exit("gpu_op_bench: op_bench failed (%d):\n%s%s" % (proc.returncode, proc.stdout[-2000:],
                                                                proc.stderr[-2000:]))
    return records, header


def head_chunk_rows(N, V):
    """core/model/gpt.cpp's head_chunk_rows: rows of logits the head makes at once."""
    return max(1, min(N, (1 << 27) // max(V, 1)))


def torch_cases(a, torch, F, dev, dt):
    """{op name: (make, note)}; make() builds the inputs and returns the call to time."""
    B, T, C, NH, V = a.B, a.T, a.C, a.NH, a.V
    N, HS, R = B * T, C // NH, head_chunk_rows(B * T, V)
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, grad=False, dtype=None):
        t = (torch.rand(*shape, generator=g) * 2 - 1).to(dev, dtype or dt)
        return t.requires_grad_(grad)

    def ids(n, hi):
        return torch.randint(0, hi, (n,), generator=g).to(dev)

    def linear_fwd(n, k, oc, bias):
        x, w, b = rand(n, k), rand(oc, k), rand(oc) if bias else None
        return lambda: F.linear(x, w, b)

    def linear_bwd(n, k, oc, bias, gelu=False):
        pre, w = rand(n, k, grad=True), rand(oc, k, grad=True)
        b = rand(oc, grad=True) if bias else None
        inp = F.gelu(pre, approximate="tanh") if gelu else pre
        y, dy = F.linear(inp, w, b), rand(n, oc)
        wrt = [pre, w] + ([b] if bias else [])
        return lambda: torch.autograd.grad(y, wrt, dy, retain_graph=True)

    def attention(q, k, v):
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = (q @ k.transpose(-2, -1)) * (1.0 / HS ** 0.5)
        mask = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        return att.masked_fill(~mask, float("-inf")).softmax(-1) @ v

    def attention_case(backward):
        qkv = rand(B, T, 3 * C, grad=backward)
        q, k, v = (x.view(B, T, NH, HS).transpose(1, 2) for x in qkv.split(C, dim=2))
        if not backward:
            return lambda: attention(q, k, v)
        y, dy = attention(q, k, v), rand(B, NH, T, HS)
        return lambda: torch.autograd.grad(y, qkv, dy, retain_graph=True)

    def layernorm(kind):
        x, w, b = rand(N, C, grad=kind == 2), rand(C, grad=kind == 2), rand(C, grad=kind == 2)
        if kind == 0:
            return lambda: F.layer_norm(x, (C,), w, b)
        if kind == 1:
            r = rand(N, C)
            return lambda: F.layer_norm(x + r, (C,), w, b)
        y, dy = F.layer_norm(x, (C,), w, b), rand(N, C)
        return lambda: torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)

    def cross_entropy():
        logits, targets = rand(R, V, grad=True), ids(R, V)

        def call():
            loss = F.cross_entropy(logits, targets)
            return torch.autograd.grad(loss, logits)
        return call

    def encoder(backward):
        tokens, wte, wpe = ids(N, V).view(B, T), rand(V, C, grad=backward), rand(T, C, grad=backward)
        if not backward:
            return lambda: F.embedding(tokens, wte) + wpe
        y, dy = F.embedding(tokens, wte) + wpe, rand(B, T, C)
        return lambda: torch.autograd.grad(y, (wte, wpe), dy, retain_graph=True)

    def params():
        return num_params(a)

    def adamw():
        p = torch.nn.Parameter(rand(params(), dtype=torch.float32))
        p.grad = rand(params(), dtype=torch.float32)
        kw = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        try:  # one fused kernel (torch >= 2.0 on CUDA)
            opt = torch.optim.AdamW([p], fused=dev.type == "cuda", **kw)
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW([p], **kw)
        return opt.step

    def sum_squares():
        x = rand(params(), dtype=torch.float32)
        return lambda: torch.linalg.vector_norm(x).item()  # ours returns to the host too

    sdpa = "SDPA" if hasattr(F, "scaled_dot_product_attention") else \
        "explicit softmax attention (torch %s has no SDPA)" % torch.__version__
    f32_grads = "" if dt == torch.float32 else "; torch's weight grads bf16, ours F32"
    return {
        "encoder_forward": (lambda: encoder(False), "F.embedding + wpe"),
        "layernorm_forward": (lambda: layernorm(0), "F.layer_norm"),
        "matmul_forward.qkv": (lambda: linear_fwd(N, C, 3 * C, True), "F.linear"),
        "attention_forward": (lambda: attention_case(False), sdpa),
        "matmul_forward.attn_proj": (lambda: linear_fwd(N, C, C, True), "F.linear"),
        "residual_layernorm_forward": (lambda: layernorm(1), "unfused: add + F.layer_norm"),
        "matmul_forward.fc": (lambda: linear_fwd(N, C, 4 * C, True), "F.linear"),
        "gelu_forward": (lambda: (lambda x: lambda: F.gelu(x, approximate="tanh"))(rand(N, 4 * C)),
                         "F.gelu tanh"),
        "matmul_forward.mlp_proj": (lambda: linear_fwd(N, 4 * C, C, True), "F.linear"),
        "add": (lambda: (lambda x, y: lambda: x + y)(rand(N, C), rand(N, C)), "a + b"),
        "matmul_forward.head": (lambda: linear_fwd(R, C, V, False), "F.linear, no bias"),
        "cross_entropy_forward_backward": (cross_entropy, "unfused: F.cross_entropy + grad"),
        "matmul_backward.head": (lambda: linear_bwd(R, C, V, False), "F.linear grad" + f32_grads),
        "matmul_gelu_backward.mlp_proj": (lambda: linear_bwd(N, 4 * C, C, True, gelu=True),
                                          "unfused: F.linear + F.gelu grad" + f32_grads),
        "matmul_backward.mlp_proj": (lambda: linear_bwd(N, 4 * C, C, True), "F.linear grad" + f32_grads),
        "matmul_backward.fc": (lambda: linear_bwd(N, C, 4 * C, True), "F.linear grad" + f32_grads),
        "layernorm_backward": (lambda: layernorm(2), "F.layer_norm grad" + f32_grads),
        "matmul_backward.attn_proj": (lambda: linear_bwd(N, C, C, True), "F.linear grad" + f32_grads),
        "attention_backward": (lambda: attention_case(True), sdpa + " grad"),
        "matmul_backward.qkv": (lambda: linear_bwd(N, C, 3 * C, True), "F.linear grad" + f32_grads),
        "encoder_backward": (lambda: encoder(True), "F.embedding + wpe grad" + f32_grads),
        "sum_squares": (sum_squares, "linalg.vector_norm().item()"),
        "adamw_update": (adamw, "optim.AdamW (fused on CUDA)"),
    }


def num_params(a):
    """GPTConfig::num_params with block_size = T (what op_bench's AdamW runs over)."""
    from bench_common import num_params as n
    return n(a.L, a.C, a.V, a.T)


def wanted(filter_, name):
    items = [s for s in filter_.split(",") if s]
    return not items or name in items or name.split(".")[0] in items


def run_torch(a):
    """{op name: {ms, note} or {error, note}} and a description of torch and the device."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(a.device)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    info = {"torch": torch.__version__,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else platform.processor() or platform.machine()}
    out = {}
    for name, (make, note) in torch_cases(a, torch, F, dev, dt).items():
        if not wanted(a.ops, name):
            continue
        try:
            call = make()
            for _ in range(a.warmup):
                call()
            sync()
            t0 = time.perf_counter()
            for _ in range(a.iters):
                call()
            sync()
            out[name] = {"ms": (time.perf_counter() - t0) * 1e3 / a.iters, "note": note}
        except (RuntimeError, MemoryError) as e:  # one op failing leaves the others' numbers
            out[name] = {"error": str(e).splitlines()[0], "note": note}
        finally:
            call = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return out, info


def throughput(r):
    """Ours in TFLOP/s where the op has FLOPs, else GB/s: (value, unit)."""
    if not r or "ms" not in r or r["ms"] <= 0:
        return None, ""
    if r.get("flops"):
        return r["flops"] / (r["ms"] * 1e-3) / 1e12, "TFLOP/s"
    return r["bytes"] / (r["ms"] * 1e-3) / 1e9, "GB/s"


def main():
    a = parse_args()
    ours, header = ({}, "") if a.skip_ours else run_ours(a)
    if header:
        print(header)
    torch_res, info = {}, {}
    if not a.skip_torch:
        try:
            torch_res, info = run_torch(a)
        except ImportError as e:  # ours is still worth printing; the exit status says it
            info = {"torch_error": "%s (%s); --skip-torch runs ours alone" % (e, sys.executable)}
            print("gpu_op_bench: no torch side: " + info["torch_error"], file=sys.stderr)
    names = list(ours) + [n for n in torch_res if n not in ours]
    rows = {}
    print("%-32s %-34s %10s %10s %7s %14s  %s" % ("op", "shape", "ours ms", "torch ms", "ratio",
                                                  "ours", "torch side"))
    for name in names:
        o, t = ours.get(name, {}), torch_res.get(name, {})
        r = {"shape": o.get("shape"), "ours_ms": o.get("ms"), "torch_ms": t.get("ms"),
             "bytes": o.get("bytes"), "flops": o.get("flops"), "torch_note": t.get("note")}
        for side, rec in (("ours", o), ("torch", t)):
            if "error" in rec:
                r[side + "_error"] = rec["error"]
        if r["ours_ms"] and r["torch_ms"]:
            r["ratio_torch_over_ours"] = r["torch_ms"] / r["ours_ms"]
        value, unit = throughput(o)
        if value is not None:
            r["ours_" + ("tflops" if unit == "TFLOP/s" else "gbps")] = value
        rows[name] = r
        note = t.get("note", "")
        if "error" in t:
            note = "error: " + t["error"]
        if "error" in o:
            note = "ours error: " + o["error"] + ("; " + note if note else "")
        print("%-32s %-34s %10s %10s %7s %14s  %s"
              % (name, r["shape"] or "-", fmt(r["ours_ms"], "%.4f"), fmt(r["torch_ms"], "%.4f"),
                 fmt(r.get("ratio_torch_over_ours"), "%.2f"),
                 "-" if value is None else "%.3g %s" % (value, unit), note), flush=True)
    results = {"bench": "gpu_op_bench", "device": a.device, "dtype": a.dtype,
               "shape": {k: getattr(a, k) for k in SHAPE_KEYS}, "iters": a.iters,
               "warmup": a.warmup, "host": platform.node(), "ours_header": header, "ops": rows}
    results.update(info)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    summary = {n: {k: float("%.4g" % r[k]) for k in ("ours_ms", "torch_ms", "ratio_torch_over_ours")
                   if r.get(k)}
               for n, r in rows.items()}
    print("RESULT gpu_op_bench " + json.dumps({"device": info.get("device_name", a.device),
                                               "dtype": a.dtype, "torch": info.get("torch"),
                                               "shape": results["shape"], "ops": summary}))
    if "torch_error" in info:
        sys.exit(1)


if __name__ == "__main__":
    main()
