"""Logits of a Hugging Face GPT-2 folder (config.json + model.safetensors), computed by a
small GPT-2 written here in the Hugging Face weight layout, in float64.

Independent of our C++ on purpose: the safetensors file is parsed with struct + json,
and neither transformers nor the safetensors package is used, so the test that runs this
checks our export against the format and the model definition, not against itself.

Usage: hf_gpt2_logits.py --model DIR --tokens FILE --out OUT.h5
FILE holds "B T" and then B*T token ids (whitespace separated); OUT.h5 gets the dataset
"logits" [B, T, V] (float64).
"""
import argparse
import json
import math
import os
import struct

import h5py
import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"]).double()
    return tensors


def layernorm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as torch.nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):  # "gelu_new"
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def conv1d(x, p, name):  # Hugging Face Conv1D: weight [in, out], y = x W + b
    return x @ p[name + ".weight"] + p[name + ".bias"]


def gpt2_logits(p, cfg, tokens):
    assert cfg["activation_function"] in ("gelu_new", "gelu_pytorch_tanh")
    eps, nh = cfg["layer_norm_epsilon"], cfg["n_head"]
    B, T = tokens.shape
    C = cfg["n_embd"]
    hs = C // nh
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        h = f"h.{l}."
        a = layernorm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        q, k, v = conv1d(a, p, h + "attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + conv1d(y, p, h + "attn.c_proj")
        m = layernorm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        x = x + conv1d(gelu_tanh(conv1d(m, p, h + "mlp.c_fc")), p, h + "mlp.c_proj")
    x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"], eps)
    return x @ p["wte.weight"].T  # tied head


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    raw = read_safetensors(os.path.join(args.model, "model.safetensors"))
    p = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in raw.items()}
    with open(args.tokens) as f:
        nums = [int(s) for s in f.read().split()]
    B, T = nums[0], nums[1]
    tokens = torch.tensor(nums[2:], dtype=torch.long).view(B, T)
    logits = gpt2_logits(p, cfg, tokens)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("logits", data=logits.numpy())
    os.replace(tmp, args.out)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
