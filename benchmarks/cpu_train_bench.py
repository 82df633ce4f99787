#!/usr/bin/python3
"""CPU training throughput: our `pretrain` beside PyTorch CPU, same model, same cores.

A benchmark, not a test (DESIGN.md: numbers are reported, never asserted). No CMake
involved in running it; build `pretrain` once, then:

  /usr/bin/python3 benchmarks/cpu_train_bench.py [--pretrain build/launch/pretrain]
      [--threads 2] [--models small,llama-small] [--out build/bench/cpu_train_bench.json]

Each model names its family: GPT-2 shapes train torch_gpt2.GPT2 on the PyTorch side,
LLaMA shapes torch_llama.Llama (pretrain --model.family llama; untied head, as the
llama presets). For each model both sides train the same shape with the same B, T, AdamW settings,
grad clipping and thread count (torch.set_num_threads + OMP_NUM_THREADS; pretrain's
train.threads), one after the other so they never share the cores. Each runs `warmup`
untimed steps then `steps` timed ones. The headline tokens/s of a side is the median
over its timed steps of all its repeats (the two sides alternate, `repeats` times):
on a shared machine other jobs only slow steps down, and the median ignores the
worst of them; the mean (timed tokens / timed seconds) is recorded too.
Ours comes from the 'train' lines of pretrain's metrics.jsonl (step_ms covers
forward, backward, clipping and the AdamW step, as the PyTorch loop here does).
Prints one line per model and, last, `RESULT cpu_train_bench {json}`; writes the JSON.
"""
import argparse
import json
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (LR, fmt, require_executable, run_pretrain,  # noqa: E402
                          torch_train, train_sections)

# Model shapes: "small" is the reference-test model; "wide2" is GPT-2 124M's width,
# heads, vocabulary and position table with 2 of its 12 layers (fits a CPU run).
# "llama-small" is small's size as a LLaMA with grouped-query attention (6 query, 2
# key/value heads; SwiGLU width 8C/3); "llama-tiny" is the llama-tiny preset (the blocks
# and vocabulary of launch/configs/llama-debug.ini) at that config's B and T.
# The keys other than B, T, steps are the model's, passed to pretrain as --model.KEY
# and to the PyTorch config of the family's module.
MODELS = {
    "small": dict(family="gpt2", n_layer=2, n_head=4, n_embd=64, vocab_size=512,
                  block_size=64, B=4, T=32, steps=30),
    "wide2": dict(family="gpt2", n_layer=2, n_head=12, n_embd=768, vocab_size=50257,
                  block_size=1024, B=4, T=256, steps=5),
    "llama-small": dict(family="llama", n_layer=2, n_head=6, n_kv_head=2, n_embd=96,
                        ffn_hidden=256, vocab_size=512, block_size=64, tie_embeddings=False,
                        B=4, T=32, steps=30),
    "llama-tiny": dict(family="llama", n_layer=4, n_head=4, n_kv_head=2, n_embd=128,
                       ffn_hidden=384, vocab_size=50257, block_size=256, tie_embeddings=False,
                       B=8, T=128, steps=5),
}
RUN_KEYS = ("B", "T", "steps")


def model_keys(m):
    """The model's own keys (family and shape), without the run's B, T, steps."""
    return {k: v for k, v in m.items() if k not in RUN_KEYS}


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain", default=os.path.join(root, "build", "launch", "pretrain"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="small,wide2", help="comma list of " + ",".join(MODELS))
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (0 = per-model default)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per side")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--out", default=os.path.join(root, "build", "bench", "cpu_train_bench.json"))
    return ap.parse_args()


def run_ours(a, name, m, steps):
    """Runs pretrain on a synthetic token stream; returns (tokens/s, per-step tokens/s)."""
    require_executable(a.pretrain, "cpu_train_bench")
    # The preset is a placeholder of the family: every shape key is overridden.
    preset = "llama-tiny" if m["family"] == "llama" else "gpt2-124M"
    model = [("preset", preset)] + list(model_keys(m).items())
    sections = train_sections(model, m["B"], m["T"], a.warmup + steps, "cpu", threads=a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    try:
        train, _ = run_pretrain(a.pretrain, sections, name, env)
    except RuntimeError as e:
        sys.exit("cpu_train_bench: %s" % e)
    # Steps in the log count from 1; the first `warmup` are allocation and cache warm-up.
    timed = [r for r in train if r["step"] > a.warmup]
    tokens = m["B"] * m["T"] * len(timed)
    seconds = sum(r["step_ms"] for r in timed) / 1e3
    return tokens / seconds, [r["tokens_per_s"] for r in timed]


def run_torch(a, name, m, steps):
    import torch
    import torch_gpt2 as tg

    shape = {k: v for k, v in model_keys(m).items() if k != "family"}
    if m["family"] == "llama":
        import torch_llama as tl

        model = tl.Llama(tl.LlamaConfig(**shape))
        model.init_random(0)  # its parameters start as torch.empty
    else:
        model = tg.GPT2(tg.GPTConfig(**shape))
    opt = tg.make_adamw(model, lr=LR)  # the same decay groups for both families
    params = list(model.parameters())
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, m["vocab_size"], (a.warmup + steps, m["B"], m["T"] + 1), generator=g)
    return torch_train(model, opt, params, rows, a.warmup, steps, m["B"], m["T"])


def main():
    a = parse_args()
    # Before torch is imported, so its OpenMP pool is sized like ours.
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch

    torch.set_num_threads(a.threads)
    results = {"bench": "cpu_train_bench", "threads": a.threads, "warmup": a.warmup,
               "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
               "models": {}}
    for name in a.models.split(","):
        if name not in MODELS:
            sys.exit("cpu_train_bench: unknown model '%s' (known: %s)" % (name, ",".join(MODELS)))
        m = MODELS[name]
        steps = a.steps or m["steps"]
        r = {"shape": m, "timed_steps": steps, "repeats": a.repeats}
        sides = [(side, fn) for side, fn, skip in (("ours", run_ours, a.skip_ours),
                                                   ("torch", run_torch, a.skip_torch)) if not skip]
        for _ in range(a.repeats):
            for side, fn in sides:
                mean, per_step = fn(a, name, m, steps)
                r.setdefault(side + "_mean_tokens_per_s", []).append(mean)
                r.setdefault(side + "_per_step", []).extend(per_step)
        for side, _ in sides:
            r[side + "_tokens_per_s"] = statistics.median(r[side + "_per_step"])
        if "ours_tokens_per_s" in r and "torch_tokens_per_s" in r:
            r["ratio_ours_over_torch"] = r["ours_tokens_per_s"] / r["torch_tokens_per_s"]
        results["models"][name] = r
        print("%-11s %-5s L=%d C=%d V=%d B=%d T=%d, %d threads: ours %s tok/s, torch %s tok/s, "
              "ratio %s" % (name, m["family"], m["n_layer"], m["n_embd"], m["vocab_size"],
                            m["B"], m["T"], a.threads, fmt(r.get("ours_tokens_per_s")),
                            fmt(r.get("torch_tokens_per_s")),
                            fmt(r.get("ratio_ours_over_torch"), "%.3f")), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    summary = {n: {k: r.get(k) for k in ("ours_tokens_per_s", "torch_tokens_per_s",
                                         "ratio_ours_over_torch")}
               for n, r in results["models"].items()}
    print("RESULT cpu_train_bench " + json.dumps({"threads": a.threads, "models": summary}))


if __name__ == "__main__":
    main()
