"""Op-level PyTorch references for tests/core/ops_torch_test.cpp: each op's forward
and backward on random inputs, in awkward shapes (odd head size 15, T=19, V=509), so a
model-level mismatch can be pinned to one op. Written in core's checkpoint format.

  attn.qkv [B,T,3C], attn.dout [B,T,C] -> attn.out, attn.dqkv
  ln.inp [N,C], ln.weight, ln.bias, ln.dout -> ln.out, ln.dinp, ln.dweight, ln.dbias
  gelu.inp [N,4C], gelu.dout -> gelu.out, gelu.dinp
  ce.logits [N,V], ce.targets [N] (some -1: ignored) -> ce.losses, ce.dlogits (dloss=1/N)
  attrs: B T C NH V

Usage: /usr/bin/python3 make_ops_reference.py --out ops.h5
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
import torch_gpt2 as tg  # noqa: E402
from ref_h5 import write_h5  # noqa: E402

B, T, C, NH, V = 3, 19, 60, 4, 509


def grads_of(fn, inputs, dout):
    """Runs fn on leaf copies of inputs; returns (output, grads) for the given dout."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    out.backward(dout)
    return out.detach(), [x.grad for x in leaves]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(7)
    rnd = lambda *shape: torch.randn(shape, generator=g)  # noqa: E731
    N = B * T
    t = {}

    t["attn.qkv"], t["attn.dout"] = rnd(B, T, 3 * C), rnd(B, T, C)
    t["attn.out"], (t["attn.dqkv"],) = grads_of(lambda q: tg.causal_attention(q, NH),
                                                [t["attn.qkv"]], t["attn.dout"])

    # Large mean and spread: the variance must come from a two-pass or shifted sum.
    t["ln.inp"] = rnd(N, C) * 3.0 + 5.0
    t["ln.weight"], t["ln.bias"], t["ln.dout"] = 1.0 + 0.1 * rnd(C), 0.1 * rnd(C), rnd(N, C)
    t["ln.out"], (t["ln.dinp"], t["ln.dweight"], t["ln.dbias"]) = grads_of(
        lambda x, w, b: F.layer_norm(x, (C,), w, b, eps=1e-5),
        [t["ln.inp"], t["ln.weight"], t["ln.bias"]], t["ln.dout"])

    t["gelu.inp"], t["gelu.dout"] = rnd(N, 4 * C) * 2.0, rnd(N, 4 * C)
    t["gelu.out"], (t["gelu.dinp"],) = grads_of(lambda x: F.gelu(x, approximate="tanh"),
                                                [t["gelu.inp"]], t["gelu.dout"])

    t["ce.logits"] = rnd(N, V) * 2.0
    targets = torch.randint(0, V, (N,), generator=g)
    targets[::7] = -1  # ignored positions: loss 0 and no gradient
    t["ce.targets"] = targets.float()
    dloss = 1.0 / N
    losses, (t["ce.dlogits"],) = grads_of(
        lambda z: F.cross_entropy(z, targets, ignore_index=-1, reduction="none"),
        [t["ce.logits"]], torch.full((N,), dloss))
    t["ce.losses"] = losses

    write_h5(a.out, t, {"B": B, "T": T, "C": C, "NH": NH, "V": V})
    print("wrote", a.out)


if __name__ == "__main__":
    main()
