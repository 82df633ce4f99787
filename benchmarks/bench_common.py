"""Helpers shared by the training benchmarks (cpu_train_bench.py, gpu_train_bench.py, pipeline_bench.py).

Both sides of a comparison must train the same thing the same way, so what defines
"the same" lives here once: the pretrain config a benchmark writes, how its
metrics.jsonl is read, the PyTorch step loop (forward, backward, clip, LR, AdamW), and
the FLOP count of core/model/gpt_config.cpp.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

# Optimizer settings both sides use (pretrain's config keys and torch_gpt2's schedule).
LR, MIN_LR, WARMUP_LR_STEPS, CLIP = 6e-4, 6e-5, 2, 1.0


def num_params(n_layer, n_embd, vocab_size, block_size):
    """GPTConfig::num_params: embeddings included, LM head tied to wte (not counted twice)."""
    C, L = n_embd, n_layer
    per_block = (2 * 2 * C            # two LayerNorms
                 + C * 3 * C + 3 * C  # qkv
                 + C * C + C          # attention projection
                 + C * 4 * C + 4 * C  # mlp fc
                 + 4 * C * C + C)     # mlp projection
    return vocab_size * C + block_size * C + L * per_block + 2 * C


def flops_per_token(n_layer, n_embd, vocab_size, block_size, T):
    """GPTConfig::flops_per_token: 6N for the matmuls' forward+backward, 12·L·C·T for attention."""
    return 6.0 * num_params(n_layer, n_embd, vocab_size, block_size) + 12.0 * n_layer * n_embd * T


def write_pretrain_ini(path, sections):
    """sections: [(name, [(key, value), ...]), ...] in order; values printed as pretrain reads them."""
    with open(path, "w") as f:
        for name, keys in sections:
            f.write("[%s]\n" % name)
            for k, v in keys:
                if isinstance(v, bool):
                    v = "true" if v else "false"
                elif isinstance(v, float):
                    v = "%g" % v
                f.write(("%s = %s" % (k, v)).rstrip() + "\n")  # "mixture =", as written by hand


def train_sections(model_keys, B, T, steps, device, threads=None, extra_train=()):
    """A pretrain config for a throughput run: synthetic tokens (empty data.mixture), no
    eval, no checkpoints, no sample, a quiet console. model_keys: [(key, value), ...]."""
    train = [("micro_batch", B), ("seq_len", T), ("grad_accum", 1), ("steps", steps),
             ("lr", LR), ("min_lr", MIN_LR), ("warmup", WARMUP_LR_STEPS), ("grad_clip", CLIP)]
    if threads is not None:
        train.append(("threads", threads))
    train.append(("device", device))
    train.extend(extra_train)
    return [("model", list(model_keys)), ("train", train), ("eval", [("every", 0)]),
            ("data", [("mixture", "")])]


def run_pretrain(pretrain, sections, tag, env=None):
    """Runs pretrain on the config; returns (train records, {kind: last record of that kind})
    of metrics.jsonl (kinds: start, end, op_profile, ...).
    Raises RuntimeError with the tail of its output when it fails."""
    with tempfile.TemporaryDirectory(prefix="bench_%s_" % tag) as run_dir:
        ini = os.path.join(run_dir, "bench.ini")
        run = [("dir", run_dir), ("checkpoint_every", 0), ("save_final", False),
               ("log_every", 1000)]
        write_pretrain_ini(ini, sections + [("run", run), ("sample", [("tokens", 0)])])
        proc = subprocess.run([pretrain, ini], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("pretrain failed (%d):\n%s%s" % (proc.returncode,
                                                               proc.stdout[-2000:],
                                                               proc.stderr[-2000:]))
        return read_metrics(run_dir)


def run_local_pretrain(pretrain, n, flags, run_dir):
    """Runs pretrain on n ranks of this machine (launch/mpirun_local.sh), one core each
    (OMP_NUM_THREADS=1, train.threads 1), synthetic data, no eval, checkpoints or sample,
    metrics in run_dir. flags: the run's own pretrain flags, after those (they win).
    Returns (the command line, train records, {kind: last record}) as read_metrics does;
    raises RuntimeError with the command and the tail of its output when it fails."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["bash", os.path.join(root, "launch", "mpirun_local.sh"), "-np", str(n), pretrain,
           "--train.threads", "1", "--train.device", "cpu", "--eval.every", "0", "--data.mixture", "",
           "--run.dir", run_dir, "--run.checkpoint_every", "0", "--run.save_final", "false",
           "--run.log_every", "1000", "--sample.tokens", "0"] + [str(f) for f in flags]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("pretrain failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd),
                                                             (proc.stdout + proc.stderr)[-3000:]))
    return (cmd,) + read_metrics(run_dir)


TP_OPS = ("allreduce", "reduce_scatter", "allgather")


def tp_bytes_per_step(n, sp, L, C, N, micro):
    """TP bytes per rank per step by operation, fp32, for L layers of width C, N = B*T
    positions per micro-batch and `micro` micro-batches (derivation: tp_bench.py's docstring):
    the blocks' all-reduces (or SP's gathers and scatters), the vocabulary-parallel
    embedding and head, the cross-entropy statistics and the grad norm."""
    if n == 1:
        return {op: 0.0 for op in TP_OPS}
    s = (n - 1) / n * N * C * 4  # one all-gather or reduce-scatter of [N, C] fp32
    stats = (n - 1) * 3 * N * 4  # the cross-entropy's per-row statistics
    norm = 2 * (n - 1) / n * 8  # the grad norm's float pair
    if not sp:
        return {"allreduce": micro * (4 * L + 2) * 2 * s + norm, "reduce_scatter": 0.0,
                "allgather": micro * stats}
    return {"allreduce": 2 * (n - 1) / n * (4 * C * L + 2 * C) * 4 + norm,
            "reduce_scatter": micro * (4 * L + 2) * s,
            "allgather": micro * ((6 * L + 2) * s + stats)}


def read_metrics(run_dir):
    """metrics.jsonl of a run: the train records in order, and the last record of each other kind."""
    train, others = [], {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "train":
                train.append(rec)
            else:
                others[rec.get("kind")] = rec
    return train, others


def require_executable(path, bench, target="pretrain", flag="--pretrain"):
    if not os.access(path, os.X_OK):
        sys.exit("%s: %s not found; build it (cmake --build build --target %s) or pass "
                 "%s PATH, or use --skip-ours" % (bench, path, target, flag))


def torch_train(model, opt, params, rows, warmup, steps, B, T, sync=None, autocast=None):
    """The PyTorch side's step loop, the same work as one pretrain step: forward, backward,
    global-norm clipping, the LR schedule and AdamW. rows: [warmup+steps, B, T+1] token ids
    on the model's device. sync waits for the device (so a step's time is its own);
    autocast is a context-manager factory (mixed precision) or None.
    Returns (mean tokens/s over the timed steps, tokens/s of each timed step)."""
    import torch
    import torch_gpt2 as tg

    per_step, total_s = [], 0.0
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if autocast is None:
            _, loss = model(rows[s, :, :-1], rows[s, :, 1:])
        else:
            with autocast():
                _, loss = model(rows[s, :, :-1], rows[s, :, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        tg.set_lr(opt, tg.lr_at(s, WARMUP_LR_STEPS, warmup + steps, LR, MIN_LR))
        opt.step()
        if sync is not None:
            sync()
        dt = time.perf_counter() - t0
        if s >= warmup:
            total_s += dt
            per_step.append(B * T / dt)
    return B * T * steps / total_s, per_step


def fmt(x, spec="%.0f"):
    return "-" if x is None else spec % x
