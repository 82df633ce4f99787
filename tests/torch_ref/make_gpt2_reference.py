"""Writes the PyTorch reference that tests/core/torch_equality_test.cpp compares against.

One HDF5 file in our checkpoint format (attrs format_version=[1], magic, float32
datasets named flat) so core's CheckpointReader opens it and loads the parameters by
their own names. Contents, for a GPT-2 with fixed random weights:

  <param name>           initial parameters (random, LayerNorm/bias included)
  grad.<param name>      d(mean loss)/d(param) on batch 0
  after.<param name>     parameters after `steps` AdamW steps
  after64.<param name>   the same steps run in float64 (the exact trajectory)
  inputs.tokens/targets  [steps, B, T] token ids (float32, exact below 2^24)
  ref.logits [B,T,V], ref.loss [1]       forward on batch 0
  ref.losses, ref.grad_norms, ref.lrs    per training step [steps]
  hp.max_lr, hp.min_lr, hp.max_norm      float hyperparameters [1]
  attrs: n_layer n_head n_embd vocab_size block_size B T steps warmup

Training step s (s = 0..steps-1): zero grads, forward/backward on batch s, global
grad-norm clipping, lr = lr_at(s, warmup, steps, max_lr, min_lr), AdamW(0.9, 0.95,
eps 1e-8, weight decay 0.1 on the blocks' matmul weights only).

Usage: /usr/bin/python3 make_gpt2_reference.py --out ref.h5 [--n_embd 60 --T 19 ...]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
import torch_gpt2 as tg  # noqa: E402
from ref_h5 import write_h5  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n_layer", type=int, default=2)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=64)
    ap.add_argument("--vocab_size", type=int, default=512)
    ap.add_argument("--block_size", type=int, default=32)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max_lr", type=float, default=1e-3)
    ap.add_argument("--min_lr", type=float, default=1e-4)
    # Below the gradient norm of the early steps and above the later ones, so the test
    # covers both the clipped and the unclipped branch (checked below).
    ap.add_argument("--max_norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)  # reproducible summation order in the oracle itself
    cfg = tg.GPTConfig(a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.block_size)
    model = tg.GPT2(cfg)
    model.init_random(a.seed)
    g = torch.Generator().manual_seed(a.seed + 1)
    # T+1 tokens per row: targets are the inputs shifted by one, as a real batch.
    rows = torch.randint(0, a.vocab_size, (a.steps, a.B, a.T + 1), generator=g)
    tokens, targets = rows[..., :-1].contiguous(), rows[..., 1:].contiguous()

    out = {}
    for name, p in model.named_parameters():
        out[name] = p.detach().clone()
    logits, loss = model(tokens[0], targets[0])
    out["ref.logits"] = logits.detach().clone()
    out["ref.loss"] = loss.detach().reshape(1)
    loss.backward()
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()

    # The same run in float64 from the same (float32) start: the exact trajectory, to
    # tell the C++ test which elements fp32 itself cannot pin down (see the test).
    model64 = tg.GPT2(cfg).double()
    model64.load_state_dict(model.state_dict())
    losses, norms, lrs = train(model, tokens, targets, a)
    train(model64, tokens, targets, a)
    for (name, p), p64 in zip(model.named_parameters(), model64.parameters()):
        out["after." + name] = p.detach().clone()
        out["after64." + name] = p64.detach().clone()
    out["inputs.tokens"] = tokens
    out["inputs.targets"] = targets
    out["ref.losses"] = torch.tensor(losses)
    out["ref.grad_norms"] = torch.tensor(norms)
    out["ref.lrs"] = torch.tensor(np.array(lrs, dtype=np.float32))
    for k in ("max_lr", "min_lr", "max_norm"):
        out["hp." + k] = torch.tensor([getattr(a, k)])

    clipped = sum(n > a.max_norm for n in norms)
    if clipped == 0:
        sys.exit("max_norm %g never clipped (norms %s): lower it so the test covers clipping"
                 % (a.max_norm, norms))
    if clipped == a.steps:
        print("note: max_norm %g clipped every step; the unclipped branch is not covered"
              % a.max_norm)
    write_h5(a.out, out, {k: getattr(a, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size",
                                                     "block_size", "B", "T", "steps", "warmup")})
    print("wrote %s: loss %.6f, grad norms %s (clipped %d/%d)"
          % (a.out, out["ref.loss"].item(), ["%.3f" % n for n in norms], clipped, a.steps))


def train(model, tokens, targets, a):
    """`steps` optimizer steps, batch s at step s; returns per-step loss, norm, lr."""
    params = list(model.parameters())
    opt = tg.make_adamw(model, lr=a.max_lr)
    losses, norms, lrs = [], [], []
    for s in range(a.steps):
        opt.zero_grad(set_to_none=False)
        _, loss = model(tokens[s], targets[s])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, a.max_norm)
        lr = tg.lr_at(s, a.warmup, a.steps, a.max_lr, a.min_lr)
        tg.set_lr(opt, lr)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        lrs.append(lr)
    return losses, norms, lrs


if __name__ == "__main__":
    main()
