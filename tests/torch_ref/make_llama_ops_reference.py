"""Op-level PyTorch references for tests/core/llama_ops_torch_test.cpp: the LLaMA
family's ops (benchmarks/torch_llama_ops.py) forward and backward on random inputs, in
two shapes each, the second awkward. Inputs are rounded to bf16-representable values so
the test can also feed them to the bf16 path unchanged. Written in core's checkpoint
format; every tensor is named "<case>.<name>", and each case's dimensions are int
attributes "<case>.<letter>":

  rms.<s>: inp, a, b (inp = a + b), weight, dout -> out, dinp, dweight   attrs eps_e6 (eps 1e-6 x)
  rope.<s>: qkv, dout -> out, dqkv                                       attrs NH NKV theta pos
  swiglu.<s>: inp [N, 2F], dout [N, F] -> out, dinp
  attn.<s>: qkv, dout -> out, dqkv                                       attrs NH NKV

Usage: /usr/bin/python3 make_llama_ops_reference.py --out llama_ops.h5
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
import torch_llama_ops as lo  # noqa: E402
from ref_h5 import write_h5  # noqa: E402


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
    g = torch.Generator().manual_seed(11)
    # bf16-representable, so the bf16 test sees the very same inputs.
    rnd = lambda *shape: torch.randn(shape, generator=g).bfloat16().float()  # noqa: E731
    t, attrs = {}, {}

    # RMSNorm: C a multiple of 32, then an odd C; eps 1e-5 (LLaMA 1/2 use 1e-6 / 1e-5).
    for name, (N, C, eps_e6) in {"small": (32, 64, 10), "awkward": (57, 77, 1)}.items():
        p = "rms." + name + "."
        x_a, x_b = rnd(N, C), rnd(N, C) * 2.0
        t[p + "a"], t[p + "b"] = x_a, x_b
        t[p + "inp"] = x_a + x_b  # the fused op's sum (exact in f32)
        t[p + "weight"], t[p + "dout"] = (1.0 + 0.1 * rnd(C)).bfloat16().float(), rnd(N, C)
        eps = eps_e6 * 1e-6
        t[p + "out"], (t[p + "dinp"], t[p + "dweight"]) = grads_of(
            lambda x, w: lo.rms_norm(x, w, eps), [t[p + "inp"], t[p + "weight"]], t[p + "dout"])
        attrs[p + "eps_e6"] = eps_e6

    # RoPE: both bases, GQA layouts, HS 16 then 10 (not a power of two), a position offset.
    cases = {"small": (2, 16, 4, 2, 16, 10000, 0), "awkward": (3, 19, 6, 2, 10, 500000, 7)}
    for name, (B, T, NH, NKV, HS, theta, pos) in cases.items():
        p = "rope." + name + "."
        W = (NH + 2 * NKV) * HS
        t[p + "qkv"], t[p + "dout"] = rnd(B, T, W), rnd(B, T, W)
        t[p + "out"], (t[p + "dqkv"],) = grads_of(
            lambda x: lo.rope(x, NH, NKV, float(theta), pos), [t[p + "qkv"]], t[p + "dout"])
        attrs.update({p + "NH": NH, p + "NKV": NKV, p + "theta": theta, p + "pos": pos})

    # SwiGLU: F a multiple of 8, then F = 37; gates spread wide (silu's tails).
    for name, (N, Fh) in {"small": (32, 64), "awkward": (57, 37)}.items():
        p = "swiglu." + name + "."
        t[p + "inp"] = (rnd(N, 2 * Fh) * 3.0).bfloat16().float()
        t[p + "dout"] = rnd(N, Fh)
        t[p + "out"], (t[p + "dinp"],) = grads_of(lo.swiglu, [t[p + "inp"]], t[p + "dout"])

    # Attention: GQA 4/2 with HS 16; GQA 6/2, MQA 6/1 and MHA 6/6 with HS 15, T 19.
    cases = {"small": (2, 16, 4, 2, 16), "gqa": (3, 19, 6, 2, 15), "mqa": (3, 19, 6, 1, 15),
             "mha": (3, 19, 6, 6, 15)}
    for name, (B, T, NH, NKV, HS) in cases.items():
        p = "attn." + name + "."
        t[p + "qkv"], t[p + "dout"] = rnd(B, T, (NH + 2 * NKV) * HS), rnd(B, T, NH * HS)
        t[p + "out"], (t[p + "dqkv"],) = grads_of(
            lambda x: lo.gqa_attention(x, NH, NKV), [t[p + "qkv"]], t[p + "dout"])
        attrs.update({p + "NH": NH, p + "NKV": NKV})

    write_h5(a.out, t, attrs)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
