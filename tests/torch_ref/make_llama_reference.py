"""Writes the PyTorch reference of a LLaMA-style model (benchmarks/torch_llama.py) that
tests/core/torch_equality_test.cpp compares core's Llama against: the same file layout
and training recipe as make_gpt2_reference.py (see its docstring), with

  attrs:   llama = 1, n_kv_head, ffn_hidden, tie_embeddings (0/1) beside the GPT-2 ones
  hp.rope_theta, hp.norm_eps   float hyperparameters [1]

Usage: /usr/bin/python3 make_llama_reference.py --out ref.h5 [--n_embd 60 --T 19 ...]
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
sys.path.insert(0, HERE)
import torch_llama as tl  # noqa: E402
from make_gpt2_reference import train  # noqa: E402  (the same AdamW loop and schedule)
from ref_h5 import write_h5  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n_layer", type=int, default=2)
    ap.add_argument("--n_head", type=int, default=6)
    ap.add_argument("--n_kv_head", type=int, default=2)
    ap.add_argument("--n_embd", type=int, default=96)
    ap.add_argument("--ffn_hidden", type=int, default=160)
    ap.add_argument("--vocab_size", type=int, default=512)
    ap.add_argument("--block_size", type=int, default=32)
    ap.add_argument("--rope_theta", type=float, default=10000.0)
    ap.add_argument("--norm_eps", type=float, default=1e-5)
    ap.add_argument("--tie_embeddings", type=int, default=0)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max_lr", type=float, default=1e-3)
    ap.add_argument("--min_lr", type=float, default=1e-4)
    ap.add_argument("--max_norm", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    cfg = tl.LlamaConfig(a.n_layer, a.n_head, a.n_kv_head, a.n_embd, a.ffn_hidden, a.vocab_size,
                         a.block_size, a.rope_theta, a.norm_eps, bool(a.tie_embeddings))
    model = tl.Llama(cfg)
    model.init_random(a.seed)
    g = torch.Generator().manual_seed(a.seed + 1)
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

    model64 = tl.Llama(cfg).double()
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
    for k in ("max_lr", "min_lr", "max_norm", "rope_theta", "norm_eps"):
        out["hp." + k] = torch.tensor([getattr(a, k)])

    clipped = sum(n > a.max_norm for n in norms)
    if clipped == 0:
        sys.exit("max_norm %g never clipped (norms %s): lower it so the test covers clipping"
                 % (a.max_norm, norms))
    attrs = {k: getattr(a, k) for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden",
                                        "vocab_size", "block_size", "tie_embeddings", "B", "T",
                                        "steps", "warmup")}
    attrs["llama"] = 1
    write_h5(a.out, out, attrs)
    print("wrote %s: loss %.6f, grad norms %s (clipped %d/%d)"
          % (a.out, out["ref.loss"].item(), ["%.3f" % n for n in norms], clipped, a.steps))


if __name__ == "__main__":
    main()
