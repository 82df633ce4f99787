"""PyTorch GPT-2 that computes exactly what core/model/gpt.cpp computes.

It is the oracle of the reference-equality test (tests/torch_ref/) and the PyTorch side
of the throughput benchmarks, so the two must never drift apart:

  * parameter names and layouts are ours (named_parameters() yields them verbatim):
    wte [V,C], wpe [block_size,C], blocks.{l}.ln1/.ln2 (.weight/.bias),
    blocks.{l}.attn.qkv.weight [3C,C] (+bias), blocks.{l}.attn.proj.weight [C,C] (+bias),
    blocks.{l}.mlp.fc.weight [4C,C] (+bias), blocks.{l}.mlp.proj.weight [C,4C] (+bias),
    lnf.weight/.bias;
  * packed qkv = q | k | v along the output dim, heads contiguous inside each part;
  * GELU tanh approximation, LayerNorm eps 1e-5, causal attention, no dropout;
  * the LM head is tied to wte (logits = lnf_out @ wte^T, no bias);
  * weight decay only on the matmul weights of the blocks (ParamStore decay=true);
  * lr_at() is core/adamw.cpp's schedule, evaluated in float32 as C++ does.

Dimension letters: B batch, T time, C channels, NH heads, HS head size, V vocabulary.
Runs with the Debian interpreter (/usr/bin/python3) that ships torch 1.13; uses SDPA and
torch.compile only when the installed torch has them.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    vocab_size: int = 512
    block_size: int = 64


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


class LayerNorm(nn.LayerNorm):
    def __init__(self, C):
        super().__init__(C, eps=1e-5)  # GPT-2's eps, as core/cpu/layernorm.cpp


class Attention(nn.Module):
    def __init__(self, cfg, use_sdpa):
        super().__init__()
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.use_sdpa = use_sdpa

    def forward(self, x):
        return self.proj(causal_attention(self.qkv(x), self.n_head, self.use_sdpa))


def causal_attention(qkv, NH, use_sdpa=False):
    """core's attention_forward: packed qkv [B,T,3C] -> out [B,T,C]."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // NH
    # [B,T,3C] -> three [B,NH,T,HS]: q|k|v blocks of C, heads contiguous inside each.
    q, k, v = qkv.split(C, dim=2)
    q, k, v = (t.reshape(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
    if use_sdpa:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))
        mask = torch.ones(T, T, dtype=torch.bool, device=qkv.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = att @ v
    return y.transpose(1, 2).reshape(B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg, use_sdpa):
        super().__init__()
        self.ln1 = LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg, use_sdpa)
        self.ln2 = LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT2(nn.Module):
    def __init__(self, cfg, use_sdpa=False):
        super().__init__()
        if use_sdpa and not has_sdpa():
            raise RuntimeError("use_sdpa=True needs torch >= 2.0 (this is %s)" % torch.__version__)
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.vocab_size, cfg.n_embd))
        self.wpe = nn.Parameter(torch.empty(cfg.block_size, cfg.n_embd))
        self.blocks = nn.ModuleList(Block(cfg, use_sdpa) for _ in range(cfg.n_layer))
        self.lnf = LayerNorm(cfg.n_embd)
        self.init_gpt2(seed=0)

    def forward(self, tokens, targets=None):
        """tokens, targets: int64 [B,T]. Returns (logits [B,T,V], mean loss or None)."""
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.blocks:
            x = block(x)
        logits = self.lnf(x) @ self.wte.t()  # tied head, no bias
        if targets is None:
            return logits, None
        flat = logits.reshape(-1, logits.shape[-1])
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()  # the loss in fp32 under mixed precision
        loss = F.cross_entropy(flat, targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def init_gpt2(self, seed):
        """GPT-2 init with core's std values (not core's RNG: values differ, stats match)."""
        g = torch.Generator().manual_seed(seed)
        proj_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if name == "wpe":
                std = 0.01
            elif name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                std = proj_std
            elif p.dim() == 2:
                std = 0.02
            else:  # biases 0, LayerNorm weights 1
                is_ln = ".ln" in name or name.startswith("lnf.")
                p.fill_(1.0 if is_ln and name.endswith(".weight") else 0.0)
                continue
            p.copy_(torch.randn(p.shape, generator=g) * std)

    @torch.no_grad()
    def init_random(self, seed):
        """Every parameter random and non-trivial (LayerNorm weights != 1, biases != 0),
        so a reference test exercises every gradient path."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() == 2:
                p.copy_(r * 0.02)
            elif name.endswith("weight"):  # LayerNorm scale
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.02 * r)


def decays(name, p):
    """ParamStore's decay flag: the blocks' matmul weights, not wte/wpe, biases or norms.
    In a dense block those are its 2-D parameters; an MoE block (tests/torch_ref's MoE
    GPT-2) adds the router [E, C] and the experts' fc/proj [E, H, C] / [E, C, H], while its
    experts.fc_bias / proj_bias are 2-D ([E, H], [E, C]) and not decayed."""
    return name.startswith("blocks.") and p.dim() >= 2 and not name.endswith("_bias")


def make_adamw(model, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, **kw):
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kw)


def lr_at(step, warmup, total_steps, max_lr, min_lr):
    """core/adamw.cpp lr_at, with the same float32/double mix so the bits agree."""
    f = np.float32
    max_lr, min_lr = f(max_lr), f(min_lr)
    if step < warmup:
        return f(max_lr * f(step + 1) / f(warmup))
    if step >= total_steps:
        return min_lr
    progress = float(step - warmup) / float(max(1, total_steps - warmup))
    return f(min_lr + f(0.5 * (1.0 + math.cos(math.pi * progress))) * (max_lr - min_lr))


def set_lr(opt, lr):
    for group in opt.param_groups:
        group["lr"] = float(lr)


def maybe_compile(model, enabled):
    """torch.compile when asked and available (torch >= 2.0); otherwise the eager model."""
    if enabled and hasattr(torch, "compile"):
        return torch.compile(model)
    return model
