"""Writes the PyTorch reference of a mixture-of-experts GPT-2 that
tests/core/torch_equality_test.cpp compares core's model against: the GPT-2 of
benchmarks/torch_gpt2.py with the MLP of every `moe_every`-th block (block l when
(l + 1) % moe_every == 0, GPTConfig::moe_block) replaced by the MoE layer of
torch_moe.py under core's names (blocks.<l>.moe.router.weight, .experts.fc, ...,
.shared.fc.weight, ...). The file layout and training recipe are make_gpt2_reference.py's
(see its docstring), with

  attrs:  moe_experts, moe_top_k, moe_expert_hidden, moe_shared_experts, moe_every,
          moe_renormalize (0/1)
  hp.moe_capacity_factor, hp.moe_aux_loss, hp.moe_z_loss   float settings [1]
  ref.aux_loss, ref.z_loss [1]      batch 0's auxiliary losses, summed over MoE blocks
  ref.aux_losses, ref.z_losses      the same per training step [steps]
  ref.tokens_per_expert [steps, moe blocks, E], ref.dropped [steps, moe blocks]
                                    each step's kept assignments per expert and drops

The loss differentiated is core's training loss: the mean cross-entropy plus every MoE
block's auxiliary losses (core/model/decoder.cpp scales their gradient by dloss x B T,
i.e. 1 for one micro-batch); ref.loss and ref.losses are the cross-entropy alone, which is
what Model::forward_train returns (the auxiliary losses come through take_moe_stats()).

Routing is discrete: the test only means something if core (fp32), PyTorch fp32 and the
fp64 run that decides which elements fp32 determines all route alike. The script
asserts that the fp64 run routes exactly as the fp32 run at every step and block, and
that no top-k decision of the fp32 run is closer than a margin far above fp32's own
drift from fp64 (so core's fp32, which drifts alike, routes the same too; the test
checks the loads per step exactly).

Usage: /usr/bin/python3 make_moe_gpt2_reference.py --out ref.h5 [--moe_top_k 1 ...]
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
sys.path.insert(0, HERE)
import torch_gpt2 as tg  # noqa: E402
from ref_h5 import write_h5  # noqa: E402
from torch_moe import moe_layer  # noqa: E402


def f32(v):
    """The float32 value the C++ side holds for a setting, as a Python float."""
    return float(np.float32(v))


class MoeMlp(nn.Module):
    """core/layers/moe.h's parameters under its names; the computation is torch_moe's."""

    def __init__(self, C, a):
        super().__init__()
        E, H, S = a.moe_experts, a.moe_expert_hidden, a.moe_shared_experts
        self.a = a
        self.router = nn.Linear(C, E, bias=False)
        self.experts = nn.Module()
        for name, shape in (("fc", (E, H, C)), ("fc_bias", (E, H)), ("proj", (E, C, H)),
                            ("proj_bias", (E, C))):
            self.experts.register_parameter(name, nn.Parameter(torch.empty(shape)))
        if S > 0:
            self.shared = nn.Module()
            self.shared.fc = nn.Linear(C, S * H)
            self.shared.proj = nn.Linear(S * H, C)
        self.last = None  # the last forward's (aux, z, top, kept, probs)

    def forward(self, x):
        B, T, C = x.shape
        a = self.a
        # Groups of one sequence (moe.group_tokens 0): rows b T .. b T + T - 1.
        out, aux, z, kept, top, probs = moe_layer(
            x.reshape(B * T, C), dict(self.named_parameters()), a.moe_experts, a.moe_top_k, T,
            f32(a.moe_capacity_factor), bool(a.moe_renormalize), f32(a.moe_aux_loss), f32(a.moe_z_loss))
        self.last = (aux, z, top, kept, probs.detach())
        return out.reshape(B, T, C)


class MoeBlock(tg.Block):
    def __init__(self, cfg, a):
        super().__init__(cfg, use_sdpa=False)
        del self.mlp
        self.moe = MoeMlp(cfg.n_embd, a)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.moe(self.ln2(x))


class MoeGPT2(tg.GPT2):
    def __init__(self, cfg, a):
        super().__init__(cfg)
        for l in range(cfg.n_layer):
            if (l + 1) % a.moe_every == 0:
                self.blocks[l] = MoeBlock(cfg, a)
        self.moe_blocks = [b.moe for b in self.blocks if isinstance(b, MoeBlock)]

    def forward(self, tokens, targets):
        """Returns logits, the mean cross-entropy, and the auxiliary losses summed over
        the MoE blocks (load balancing, z-loss)."""
        logits, ce = super().forward(tokens, targets)
        aux = sum(m.last[0] for m in self.moe_blocks)
        z = sum(m.last[1] for m in self.moe_blocks)
        return logits, ce, aux, z

    def routing(self):
        """Per MoE block: (top [N, k], kept [N, k], probs [N, E]) of the last forward."""
        return [m.last[2:] for m in self.moe_blocks]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n_layer", type=int, default=4)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=32)
    ap.add_argument("--vocab_size", type=int, default=97)
    ap.add_argument("--block_size", type=int, default=11)
    ap.add_argument("--B", type=int, default=3)
    ap.add_argument("--T", type=int, default=9)
    ap.add_argument("--moe_experts", type=int, default=4)
    ap.add_argument("--moe_top_k", type=int, default=2)
    ap.add_argument("--moe_expert_hidden", type=int, default=24)
    ap.add_argument("--moe_shared_experts", type=int, default=1)
    ap.add_argument("--moe_every", type=int, default=2)
    ap.add_argument("--moe_capacity_factor", type=float, default=1.0)
    ap.add_argument("--moe_renormalize", type=int, default=0)
    ap.add_argument("--moe_aux_loss", type=float, default=0.1)
    ap.add_argument("--moe_z_loss", type=float, default=0.01)
    # The router's init std: large enough that routing is uneven (capacity drops) and its
    # top-k decisions sit well clear of ties (init_random's 0.02 gives near-uniform probs).
    ap.add_argument("--router_std", type=float, default=0.15)
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
    torch.set_num_threads(1)  # reproducible summation order in the oracle itself
    cfg = tg.GPTConfig(a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.block_size)
    model = MoeGPT2(cfg, a)
    model.init_random(a.seed)
    g = torch.Generator().manual_seed(a.seed + 2)
    with torch.no_grad():
        for m in model.moe_blocks:
            m.router.weight.copy_(torch.randn(m.router.weight.shape, generator=g) * a.router_std)
    g = torch.Generator().manual_seed(a.seed + 1)
    rows = torch.randint(0, a.vocab_size, (a.steps, a.B, a.T + 1), generator=g)
    tokens, targets = rows[..., :-1].contiguous(), rows[..., 1:].contiguous()

    out = {}
    for name, p in model.named_parameters():
        out[name] = p.detach().clone()
    logits, ce, aux, z = model(tokens[0], targets[0])
    out["ref.logits"] = logits.detach().clone()
    out["ref.loss"] = ce.detach().reshape(1)
    out["ref.aux_loss"] = aux.detach().reshape(1)
    out["ref.z_loss"] = z.detach().reshape(1)
    (ce + aux + z).backward()
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()

    # The same run in float64 from the same (float32) start: the exact trajectory.
    model64 = MoeGPT2(cfg, a).double()
    model64.load_state_dict(model.state_dict())
    r32 = train(model, tokens, targets, a)
    r64 = train(model64, tokens, targets, a)
    margin, drift = check_routing(r32["routing"], r64["routing"], a.moe_top_k, a.moe_experts)
    # core's fp32 drifts from the exact trajectory about as PyTorch's fp32 does; a margin
    # 100 times that drift leaves core no room to choose differently.
    if margin <= max(1e-5, 100 * drift):
        sys.exit("closest top-%d decision %.2e vs fp32 drift %.2e: change the seed"
                 % (a.moe_top_k, margin, drift))
    for (name, p), p64 in zip(model.named_parameters(), model64.parameters()):
        out["after." + name] = p.detach().clone()
        out["after64." + name] = p64.detach().clone()
    out["inputs.tokens"] = tokens
    out["inputs.targets"] = targets
    for k in ("losses", "aux_losses", "z_losses", "grad_norms"):
        out["ref." + k] = torch.tensor(r32[k])
    out["ref.lrs"] = torch.tensor(np.array(r32["lrs"], dtype=np.float32))
    E = a.moe_experts
    loads = torch.tensor([[[int(((top == e) & kept).sum()) for e in range(E)] for top, kept, _ in step]
                          for step in r32["routing"]], dtype=torch.float64)
    dropped = torch.tensor([[int((~kept).sum()) for _, kept, _ in step] for step in r32["routing"]],
                           dtype=torch.float64)
    out["ref.tokens_per_expert"], out["ref.dropped"] = loads, dropped
    for k in ("max_lr", "min_lr", "max_norm"):
        out["hp." + k] = torch.tensor([getattr(a, k)])
    for k in ("capacity_factor", "aux_loss", "z_loss"):
        out["hp.moe_" + k] = torch.tensor([f32(getattr(a, "moe_" + k))])

    norms = r32["grad_norms"]
    clipped = sum(n > a.max_norm for n in norms)
    if clipped == 0:
        sys.exit("max_norm %g never clipped (norms %s): lower it so the test covers clipping"
                 % (a.max_norm, norms))
    if a.moe_capacity_factor > 0 and dropped[0].sum() == 0:
        sys.exit("capacity factor %g drops nothing on batch 0: the test would not cover drops"
                 % a.moe_capacity_factor)
    keys = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size", "B", "T", "steps", "warmup",
            "moe_experts", "moe_top_k", "moe_expert_hidden", "moe_shared_experts", "moe_every",
            "moe_renormalize")
    write_h5(a.out, out, {k: getattr(a, k) for k in keys})
    print("wrote %s: loss %.6f aux %.6g z %.6g, grad norms %s (clipped %d/%d), batch-0 loads %s, "
          "dropped per step %s, closest top-k decision %.2e (fp32 drift %.2e)"
          % (a.out, ce.item(), aux.item(), z.item(), ["%.3f" % n for n in norms], clipped, a.steps,
             loads[0].long().tolist(), dropped.sum(dim=1).long().tolist(), margin, drift))


def train(model, tokens, targets, a):
    """`steps` optimizer steps on cross-entropy + auxiliary losses, batch s at step s;
    returns per-step losses, norm, lr and each MoE block's routing."""
    params = list(model.parameters())
    opt = tg.make_adamw(model, lr=a.max_lr)
    rec = {k: [] for k in ("losses", "aux_losses", "z_losses", "grad_norms", "lrs", "routing")}
    for s in range(a.steps):
        opt.zero_grad(set_to_none=False)
        _, ce, aux, z = model(tokens[s], targets[s])
        (ce + aux + z).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, a.max_norm)
        lr = tg.lr_at(s, a.warmup, a.steps, a.max_lr, a.min_lr)
        tg.set_lr(opt, lr)
        opt.step()
        for k, v in (("losses", ce.item()), ("aux_losses", aux.item()), ("z_losses", z.item()),
                     ("grad_norms", norm.item()), ("lrs", lr), ("routing", model.routing())):
            rec[k].append(v)
    return rec


def check_routing(routing32, routing64, k, E):
    """Asserts the fp64 run chose and kept exactly what the fp32 run did at every step and
    MoE block; returns the fp32 run's closest top-k decision (the smallest gap between
    consecutive sorted probabilities among the first k + 1, which fix the choices and
    their order) and the largest |p32 - p64| (fp32's drift from the exact trajectory)."""
    margin, drift = float("inf"), 0.0
    for s, (step32, step64) in enumerate(zip(routing32, routing64)):
        for b, ((top, kept, p), (top64, kept64, p64)) in enumerate(zip(step32, step64)):
            assert torch.equal(top, top64) and torch.equal(kept, kept64), \
                f"step {s}, MoE block {b}: the fp64 run routes differently from fp32; change the seed"
            ranked = torch.sort(p.double(), dim=-1, descending=True).values
            gaps = (ranked[:, :-1] - ranked[:, 1:])[:, :min(k, E - 1)]
            margin = min(margin, gaps.min().item())
            drift = max(drift, (p.double() - p64).abs().max().item())
    return margin, drift


if __name__ == "__main__":
    main()
