"""PyTorch formulations of the LLaMA family's ops, as core/ops.h defines them (the
oracle of tests/torch_ref/make_llama_ops_reference.py; the PyTorch LLaMA model will
build on these). Hugging Face's LlamaModel computes the same things:

  * rms_norm: LlamaRMSNorm, x * rsqrt(mean(x^2) + eps) * weight (no bias, no mean);
  * rope: apply_rotary_pos_emb with rotate_half, i.e. pairs (i, i + HS/2), angle
    pos * theta^(-2i/HS); the angles are computed in float64 (as core does) and their
    cos/sin rounded to float32, where HF computes the angle in float32;
  * swiglu: LlamaMLP's act_fn(gate_proj(x)) * up_proj(x), with gate and up packed in
    one [N, 2F] tensor (gate first);
  * gqa_attention: repeat_kv then causal softmax attention, on packed
    qkv [B, T, (NH + 2 NKV) HS] = q heads | k heads | v heads.

Dimension letters: B batch, T time, NH query heads, NKV key/value heads, HS head size,
F SwiGLU hidden width.
"""
import math

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_cos_sin(T, HS, theta, pos_offset=0):
    """cos, sin [T, HS] (each half repeated, HF's layout), float32 from float64 angles."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    pos = torch.arange(pos_offset, pos_offset + T, dtype=torch.float64)
    angles = torch.outer(pos, inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def split_qkv(qkv, NH, NKV):
    """Packed [B, T, (NH + 2 NKV) HS] -> q [B, NH, T, HS], k and v [B, NKV, T, HS]."""
    B, T, W = qkv.shape
    HS = W // (NH + 2 * NKV)
    q, k, v = qkv.split([NH * HS, NKV * HS, NKV * HS], dim=2)
    return (q.reshape(B, T, NH, HS).transpose(1, 2), k.reshape(B, T, NKV, HS).transpose(1, 2),
            v.reshape(B, T, NKV, HS).transpose(1, 2))


def rope(qkv, NH, NKV, theta, pos_offset=0):
    """qkv with q and k rotated (v as it is), in the packed layout."""
    B, T, W = qkv.shape
    q, k, v = split_qkv(qkv, NH, NKV)
    cos, sin = rope_cos_sin(T, q.shape[-1], theta, pos_offset)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    return torch.cat([t.transpose(1, 2).reshape(B, T, -1) for t in (q, k, v)], dim=2)


def swiglu(h):
    gate, up = h.chunk(2, dim=-1)
    return F.silu(gate) * up


def gqa_attention(qkv, NH, NKV):
    """Causal attention, kv head j serving query heads [j NH/NKV, (j+1) NH/NKV):
    out [B, T, NH HS]."""
    B, T, _ = qkv.shape
    q, k, v = split_qkv(qkv, NH, NKV)
    HS = q.shape[-1]
    k, v = (t.repeat_interleave(NH // NKV, dim=1) for t in (k, v))  # HF's repeat_kv
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
    return (att @ v).transpose(1, 2).reshape(B, T, NH * HS)
