#!/usr/bin/python3
"""GPU training throughput and MFU: our `pretrain` beside PyTorch on the same GPU.

A benchmark, not a test (DESIGN.md: numbers are reported, never asserted). Build
`pretrain` with CUDA, then, on a machine with a GPU and a torch >= 2.0 interpreter:

  python3 benchmarks/gpu_train_bench.py [--pretrain build/launch/pretrain]
      [--models gpt2-124M,gpt2-350M,gpt2-774M,gpt2-1.5B] [--dtype bf16|fp32]
      [--recompute full] [--micro-batch 16] [--seq-len 1024] [--vocab 50304] [--peak-tflops 989]
      [--attention-variants mma,simple] [--env-variants GPT_CUDA_GELU_EPILOGUE=0]
      [--profile-ops]
      [--out build/bench/gpu_train_bench.json]

Per model, both sides train the GPT-2 preset with the same B, T, AdamW settings, LR
schedule and global-norm clipping on synthetic tokens, one after the other:
  * ours: pretrain with train.device = cuda, train.dtype = bf16 (or fp32) and, with
    --recompute, train.recompute; step_ms from its metrics.jsonl;
  * PyTorch (benchmarks/torch_gpt2.py, the model of the reference test): bf16 autocast
    over fp32 weights, torch.compile, scaled_dot_product_attention, fused AdamW, and
    per-block activation checkpointing when --recompute is given, in its own process
    (so it starts with the GPU's memory free and an out-of-memory stays one row's error).
The vocabulary is GPT-2's 50,257 padded to 50,304 (a multiple of 128, as nanoGPT and
llm.c train it) on both sides: bf16 rows of the head's GEMMs are then 16-byte aligned;
the extra rows are a 0.03% larger model and count in N. `--vocab 50257` measures the
unpadded shape.
--attention-variants also runs ours with each listed GPT_ATTENTION value (the attention
kernels of core/cuda: the default wmma tensor-core path, `mma` for the inline-PTX
mma.sync kernels, `simple` for the CUDA-core ones), reported as ours_<value>.
--env-variants does the same for any environment settings: a comma list of runs, each
NAME=VALUE (several joined by +), e.g. GPT_CUDA_GELU_EPILOGUE=0 for the MLP backward
without cuBLASLt's DGELU epilogue; reported as ours_<settings>.
--profile-ops adds one more run of ours with train.profile_ops (every op timed between
device synchronisations, so that run is slower and is not the headline) and prints each
op's share of the step.
Each runs `warmup` untimed steps (allocation, autotuning, compilation) then `steps`
timed ones; the headline is the median over timed steps (other jobs only slow steps).
MFU = tokens/s x FLOPs per token (6N + 12·L·C·T, N counted as GPTConfig::num_params)
/ the peak, by default H100 SXM's 989 TFLOP/s dense bf16 (pass --peak-tflops for
other GPUs, or to compare fp32 runs against an fp32/TF32 peak).
Prints one line per model and, last, `RESULT gpu_train_bench {json}`; writes the JSON.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (LR, flops_per_token, fmt, num_params,  # noqa: E402
                          require_executable, run_pretrain, torch_train, train_sections)

# pretrain's presets (core/model/gpt_config.cpp). "tiny" is for a CPU smoke run of this
# script (--device cpu), not a measurement.
MODELS = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=50257, block_size=256),
    "gpt2-124M": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024),
    "gpt2-350M": dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50257, block_size=1024),
    "gpt2-774M": dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=50257, block_size=1024),
    "gpt2-1.5B": dict(n_layer=48, n_head=25, n_embd=1600, vocab_size=50257, block_size=1024),
}
H100_BF16_DENSE_TFLOPS = 989.0


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain", default=os.path.join(root, "build", "launch", "pretrain"))
    ap.add_argument("--models", default="gpt2-124M",
                    help="comma list of " + ",".join(m for m in MODELS if m != "tiny"))
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                    help="ours: train.dtype; torch: bf16 autocast or plain fp32")
    ap.add_argument("--recompute", default="none",
                    help="ours: train.recompute (e.g. full); torch: checkpoint every block")
    ap.add_argument("--micro-batch", type=int, default=16, help="B, sequences per step")
    ap.add_argument("--seq-len", type=int, default=1024, help="T, tokens per sequence")
    ap.add_argument("--vocab", type=int, default=50304,
                    help="vocabulary rows of wte and the head, both sides (GPT-2's 50257 padded)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per side")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per side")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                    help="device peak for MFU (default: H100 SXM dense bf16)")
    ap.add_argument("--no-compile", action="store_true", help="torch side without torch.compile")
    ap.add_argument("--torch-python", default=sys.executable,
                    help="interpreter for the torch side (needs torch >= 2.0 for compile/SDPA)")
    ap.add_argument("--attention-variants", default="",
                    help="comma list of GPT_ATTENTION values to run ours with as well")
    ap.add_argument("--env-variants", default="",
                    help="comma list of NAME=VALUE[+NAME=VALUE] settings to run ours with as well")
    ap.add_argument("--profile-ops", action="store_true",
                    help="one more run of ours with train.profile_ops: time per op")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--out", default=os.path.join(root, "build", "bench", "gpu_train_bench.json"))
    # Hidden: a CPU smoke run of the plumbing (--device cpu --models tiny), and the mode
    # in which this script runs one torch measurement in a child process.
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--torch-worker", metavar="MODEL", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run_ours(a, name, env_extra=None, profile=False):
    """pretrain on synthetic tokens; returns its per-step records after warm-up.
    env_extra: environment settings for this run (say GPT_ATTENTION); profile: with
    train.profile_ops, returning its op_profile record too."""
    require_executable(a.pretrain, "gpu_train_bench")
    extra = [("dtype", a.dtype)]
    if a.recompute != "none":
        extra.append(("recompute", a.recompute))
    if profile:
        extra.append(("profile_ops", True))
    sections = train_sections([("preset", name), ("vocab_size", a.vocab)], a.micro_batch, a.seq_len, a.warmup + a.steps,
                              a.device, extra_train=extra)
    env = dict(os.environ, **env_extra) if env_extra else None
    train, records = run_pretrain(a.pretrain, sections, name, env=env)
    if profile:
        return records.get("op_profile") or {"error": "pretrain wrote no op_profile record"}
    timed = [r for r in train if r["step"] > a.warmup]  # the log counts steps from 1
    start = records.get("start")
    return {"per_step_ms": [r["step_ms"] for r in timed],
            "params_reported": start.get("params") if start else None}


def variants(a):
    """(side name, environment settings) of each extra run of ours."""
    out = [("ours_" + v, {"GPT_ATTENTION": v}) for v in filter(None, a.attention_variants.split(","))]
    for spec in filter(None, a.env_variants.split(",")):
        env = {}
        for setting in spec.split("+"):
            key, eq, value = setting.partition("=")
            if not eq or not key:
                sys.exit("gpu_train_bench: --env-variants wants NAME=VALUE, got '%s'" % setting)
            env[key] = value
        out.append(("ours_" + re.sub(r"[^A-Za-z0-9]+", "_", spec).strip("_").lower(), env))
    names = [side for side, _ in out]
    for side in set(names):
        if names.count(side) > 1:  # results are keyed by name: one would overwrite another
            sys.exit("gpu_train_bench: two variants are both reported as '%s'" % side)
    return out


def torch_worker(a):
    """Child process: one torch measurement, printed as `TORCH_RESULT {json}`."""
    import contextlib

    import torch
    import torch_gpt2 as tg

    m = model_shape(a.torch_worker, a)
    dev = torch.device(a.device)
    cfg = tg.GPTConfig(m["n_layer"], m["n_head"], m["n_embd"], m["vocab_size"], m["block_size"])
    model = tg.GPT2(cfg, use_sdpa=tg.has_sdpa()).to(dev)
    if a.recompute != "none":
        wrap_blocks_in_checkpoints(model)
    n_params = sum(p.numel() for p in model.parameters())
    params = list(model.parameters())
    try:  # fused AdamW: one kernel for all parameters (torch >= 2.0, CUDA only)
        opt = tg.make_adamw(model, lr=LR, fused=dev.type == "cuda")
        fused = dev.type == "cuda"
    except (TypeError, RuntimeError):
        opt, fused = tg.make_adamw(model, lr=LR), False
    compiled = not a.no_compile and dev.type == "cuda" and hasattr(torch, "compile")
    step_model = tg.maybe_compile(model, compiled)
    autocast = None
    if a.dtype == "bf16":
        autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    steps = a.warmup + a.steps
    rows = torch.randint(0, m["vocab_size"], (steps, a.micro_batch, a.seq_len + 1), generator=g)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    result = {"torch": torch.__version__, "sdpa": tg.has_sdpa(), "compiled": compiled,
              "fused_adamw": fused, "params_counted": n_params,
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
              else platform.processor() or platform.machine()}
    with contextlib.suppress(Exception):
        result["cuda"] = torch.version.cuda
    try:
        _, per_step = torch_train(step_model, opt, params, rows.to(dev), a.warmup, a.steps,
                                  a.micro_batch, a.seq_len, sync=sync, autocast=autocast)
        result["per_step_ms"] = [a.micro_batch * a.seq_len / tps * 1e3 for tps in per_step]
        if dev.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    except torch.cuda.OutOfMemoryError if hasattr(torch.cuda, "OutOfMemoryError") else MemoryError:
        result["error"] = "out of memory (try --micro-batch smaller or --recompute full)"
    print("TORCH_RESULT " + json.dumps(result), flush=True)


def wrap_blocks_in_checkpoints(model):
    """Activation checkpointing per transformer block, what train.recompute=full does."""
    import torch
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block  # parameter names stay under blocks.{l}. (weight decay flags)

        def forward(self, x):
            return checkpoint(self.block, x, use_reentrant=False)

    for i, block in enumerate(model.blocks):
        model.blocks[i] = Checkpointed(block)


def run_torch(a, name):
    cmd = [a.torch_python, os.path.abspath(__file__), "--torch-worker", name,
           "--device", a.device, "--dtype", a.dtype, "--recompute", a.recompute,
           "--micro-batch", str(a.micro_batch), "--seq-len", str(a.seq_len), "--vocab", str(a.vocab),
           "--warmup", str(a.warmup), "--steps", str(a.steps)]
    if a.no_compile:
        cmd.append("--no-compile")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("TORCH_RESULT "):
            return json.loads(line[len("TORCH_RESULT "):])
    raise RuntimeError("torch side failed (%d):\n%s%s" % (proc.returncode, proc.stdout[-2000:],
                                                          proc.stderr[-3000:]))


def summarise(r, side, m, a):
    """Median step time -> tokens/s and MFU for one side, stored as <side>_* keys."""
    ms = r[side].get("per_step_ms")
    if not ms:
        return
    tokens = a.micro_batch * a.seq_len
    med = statistics.median(ms)
    r[side + "_step_ms"] = med
    r[side + "_tokens_per_s"] = tokens / (med / 1e3)
    r[side + "_mean_tokens_per_s"] = tokens * len(ms) / (sum(ms) / 1e3)
    r[side + "_mfu"] = r[side + "_tokens_per_s"] * r["flops_per_token"] / (a.peak_tflops * 1e12)


def main():
    a = parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if a.device != "cuda" and not a.skip_ours:
        print("gpu_train_bench: --device %s is a smoke run of the plumbing" % a.device)
    results = {"bench": "gpu_train_bench", "device": a.device, "dtype": a.dtype, "vocab": a.vocab,
               "recompute": a.recompute, "B": a.micro_batch, "T": a.seq_len,
               "warmup": a.warmup, "timed_steps": a.steps, "peak_tflops": a.peak_tflops,
               "host": platform.node(), "models": {}}
    for name in a.models.split(","):
        if name not in MODELS:
            sys.exit("gpu_train_bench: unknown model '%s' (known: %s)" % (name, ",".join(MODELS)))
        m = model_shape(name, a)
        if a.seq_len > m["block_size"]:
            sys.exit("gpu_train_bench: --seq-len %d exceeds %s's block size %d"
                     % (a.seq_len, name, m["block_size"]))
        r = {"shape": m, "params": num_params(m["n_layer"], m["n_embd"], m["vocab_size"],
                                              m["block_size"]),
             "flops_per_token": flops_per_token(m["n_layer"], m["n_embd"], m["vocab_size"],
                                                m["block_size"], a.seq_len)}
        sides = [("ours", run_ours, a.skip_ours)]
        for side, env in variants(a):
            sides.append((side, lambda a_, n_, env=env: run_ours(a_, n_, env), a.skip_ours))
        sides.append(("torch", run_torch, a.skip_torch))
        for side, fn, skip in sides:
            if skip:
                continue
            try:  # one side failing (say, out of memory at 1.5B) leaves the other's numbers
                r[side] = fn(a, name)
            except RuntimeError as e:
                r[side] = {"error": str(e)}
                print("gpu_train_bench: %s %s: %s" % (name, side, e), file=sys.stderr)
            summarise(r, side, m, a)
        if "torch" in r and "device_name" in r["torch"]:
            results.setdefault("device_name", r["torch"]["device_name"])
        for side, _, _ in sides[:-1]:
            if side + "_tokens_per_s" in r and "torch_tokens_per_s" in r:
                r["ratio_%s_over_torch" % side] = r[side + "_tokens_per_s"] / r["torch_tokens_per_s"]
        if a.profile_ops and not a.skip_ours:
            try:
                prof = r["ours_op_profile"] = run_ours(a, name, profile=True)
                print_op_profile(name, prof)
            except RuntimeError as e:
                r["ours_op_profile"] = {"error": str(e)}
                print("gpu_train_bench: %s op profile: %s" % (name, e), file=sys.stderr)
        results["models"][name] = r
        print("%-9s B=%d T=%d %s%s: ours %s tok/s %s ms MFU %s | torch %s tok/s %s ms MFU %s | "
              "ratio %s" % (name, a.micro_batch, a.seq_len, a.dtype,
                            "" if a.recompute == "none" else " recompute=" + a.recompute,
                            fmt(r.get("ours_tokens_per_s")), fmt(r.get("ours_step_ms"), "%.1f"),
                            fmt(pct(r.get("ours_mfu")), "%.1f%%"),
                            fmt(r.get("torch_tokens_per_s")), fmt(r.get("torch_step_ms"), "%.1f"),
                            fmt(pct(r.get("torch_mfu")), "%.1f%%"),
                            fmt(r.get("ratio_ours_over_torch"), "%.3f")), flush=True)
        for side, _, _ in sides[1:-1]:
            print("%-9s   %s: %s tok/s %s ms MFU %s | ratio %s"
                  % ("", side, fmt(r.get(side + "_tokens_per_s")), fmt(r.get(side + "_step_ms"), "%.1f"),
                     fmt(pct(r.get(side + "_mfu")), "%.1f%%"),
                     fmt(r.get("ratio_%s_over_torch" % side), "%.3f")), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    summary = {n: {k: v for k, v in r.items() if k.startswith(("ours", "torch", "ratio"))
                   and not isinstance(v, dict)} for n, r in results["models"].items()}
    print("RESULT gpu_train_bench " + json.dumps({"device": results.get("device_name", a.device),
                                                  "dtype": a.dtype, "recompute": a.recompute,
                                                  "B": a.micro_batch, "T": a.seq_len,
                                                  "models": summary}))


def print_op_profile(name, prof):
    if "ops" not in prof:
        print("%s op profile: %s" % (name, prof.get("error")))
        return
    print("%s op profile (profiled run, mean of %d steps): step %.1f ms, ops %.1f ms, outside %.1f ms"
          % (name, prof["steps"], prof["step_ms"], prof["ops_ms"], prof["step_ms"] - prof["ops_ms"]))
    for o in prof["ops"][:14]:
        print("    %-32s %8.2f ms %5.1f%% %6.1f calls"
              % (o["op"], o["ms"], 100 * o["ms"] / prof["step_ms"], o["calls"]))


def model_shape(name, a):
    """The preset's shape with this run's vocabulary."""
    return dict(MODELS[name], vocab_size=a.vocab)


def pct(x):
    return None if x is None else 100.0 * x


if __name__ == "__main__":
    main()
