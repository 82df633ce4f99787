"""PyTorch LLaMA-style decoder that computes what core/model/llama.cpp computes, written
from the papers' and Hugging Face's definitions with the ops of torch_llama_ops.py (the
oracle of tests/torch_ref/make_llama_reference.py):

  * parameter names and layouts are ours (named_parameters() yields them verbatim):
    wte [V,C]; blocks.{l}.ln1.weight, .ln2.weight [C] (RMSNorm);
    blocks.{l}.attn.qkv.weight [(NH + 2 NKV) HS, C] = q heads | k heads | v heads;
    blocks.{l}.attn.proj.weight [C, NH HS]; blocks.{l}.mlp.gate_up.weight [2F, C] =
    gate (W1) | up (W3); blocks.{l}.mlp.down.weight [C, F] (W2); lnf.weight [C];
    lm_head [V, C] unless the head is tied to wte;
  * no biases, no learned positions: RoPE on q and k (rotate_half pairs, angles from
    float64), causal grouped-query attention, SwiGLU, RMSNorm with eps;
  * weight decay only on the 2-D matmul weights of the blocks (as torch_gpt2.decays).

Dimension letters: B batch, T time, C channels, NH query heads, NKV key/value heads,
HS head size, F SwiGLU width, V vocabulary.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_llama_ops as lo


@dataclass
class LlamaConfig:
    n_layer: int = 2
    n_head: int = 6
    n_kv_head: int = 2
    n_embd: int = 96
    ffn_hidden: int = 160
    vocab_size: int = 512
    block_size: int = 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return lo.rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        HS = cfg.n_embd // cfg.n_head
        self.NH, self.NKV, self.theta = cfg.n_head, cfg.n_kv_head, cfg.rope_theta
        self.qkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * HS, bias=False)
        self.proj = nn.Linear(cfg.n_head * HS, cfg.n_embd, bias=False)

    def forward(self, x):
        qkv = lo.rope(self.qkv(x), self.NH, self.NKV, self.theta)
        return self.proj(lo.gqa_attention(qkv, self.NH, self.NKV))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down(lo.swiglu(self.gate_up(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ln2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        h = x + self.attn(self.ln1(x))
        return h + self.mlp(self.ln2(h))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.vocab_size, cfg.n_embd))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.lnf = RMSNorm(cfg.n_embd, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Parameter(torch.empty(cfg.vocab_size, cfg.n_embd))

    def forward(self, tokens, targets=None):
        """tokens, targets: int64 [B,T]. Returns (logits [B,T,V], mean loss or None)."""
        x = self.wte[tokens]
        for block in self.blocks:
            x = block(x)
        head = self.wte if self.cfg.tie_embeddings else self.lm_head
        logits = self.lnf(x) @ head.t()
        if targets is None:
            return logits, None
        flat = logits.reshape(-1, logits.shape[-1])
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        return logits, F.cross_entropy(flat, targets.reshape(-1))

    @torch.no_grad()
    def init_random(self, seed):
        """Every parameter random and non-trivial (RMSNorm weights != 1), so a reference
        test exercises every gradient path."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(r * 0.02 if p.dim() == 2 else 1.0 + 0.1 * r)
