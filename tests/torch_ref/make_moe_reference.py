"""PyTorch reference for tests/core/moe_torch_test.cpp: the mixture-of-experts layer
(core/layers/moe.h) written independently with torch autograd, in float64, on random
float32-representable inputs and parameters (the layer itself is in torch_moe.py), forward and backward, in three cases:

  drops     C 24, E 4, k 2, H 40, two sequences of T 7 (group = a sequence), capacity
            factor 1.0 (4 slots per expert per group) with drops, no shared experts
  dropless  C 20, E 6, k 2, H 12, two shared experts, renormalised top-2, cf 0,
            groups of 4 tokens (half a sequence of T 8)
  top1      C 16, E 5, k 1, H 9, one shared expert, three sequences of T 8, cf 1.25
            (2 slots) with drops

The layer's rules, as the C++ header states them: softmax over E, top-k best first with
ties to the lower index, optional renormalisation of the k weights, capacity
ceil(cf G k / E) per expert per group claimed by first choices in token order, then
second choices; load balancing E sum_e f_e P_e per group (f from all assignments before
drops), its mean over groups; z-loss mean(lse^2). The loss differentiated is
sum(out * dout) + scale * (aux_loss + z_loss).

Every tensor is "<case>.<name>": inputs x, dout; the parameters under their layer names
(<case>.router.weight, <case>.experts.fc, ...); float settings capacity_factor,
aux_loss, z_loss, aux_grad_scale as 1-element tensors; results out, dx, aux_loss_value,
z_loss_value, tokens_per_expert, dropped, and "grad/<parameter name>". Integer settings
are attributes "<case>.E" etc.

Usage: /usr/bin/python3 make_moe_reference.py --out moe.h5
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_h5 import write_h5  # noqa: E402
from torch_moe import moe_layer  # noqa: E402

CASES = {
    # name: C, E, k, H, S, B, T, group_tokens (0: T), cf, renormalize, aux, z, scale
    "drops": (24, 4, 2, 40, 0, 2, 7, 0, 1.0, False, 0.1, 0.01, 0.5),
    "dropless": (20, 6, 2, 12, 2, 2, 8, 4, 0.0, True, 0.05, 0.02, 0.25),
    "top1": (16, 5, 1, 9, 1, 3, 8, 0, 1.25, False, 0.2, 0.001, 1.0),
}


def f32(v):
    """The float32 value the C++ side holds for a setting, as a Python float."""
    return float(torch.tensor(v, dtype=torch.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(13)
    rnd = lambda *shape: torch.randn(shape, generator=g, dtype=torch.float32)  # noqa: E731
    t, attrs = {}, {}
    for name, (C, E, k, H, S, B, T, group, cf, renorm, aux_c, z_c, scale) in CASES.items():
        pre = name + "."
        N, G = B * T, (group if group > 0 else T)
        cf, aux_c, z_c, scale = f32(cf), f32(aux_c), f32(z_c), f32(scale)
        # Router weights large enough that routing is uneven (capacity drops happen).
        shapes = {"router.weight": ([E, C], 0.3), "experts.fc": ([E, H, C], 0.2),
                  "experts.fc_bias": ([E, H], 0.1), "experts.proj": ([E, C, H], 0.2),
                  "experts.proj_bias": ([E, C], 0.1)}
        if S > 0:
            shapes.update({"shared.fc.weight": ([S * H, C], 0.2), "shared.fc.bias": ([S * H], 0.1),
                           "shared.proj.weight": ([C, S * H], 0.2), "shared.proj.bias": ([C], 0.1)})
        params = {n: (rnd(*shape) * std).double().requires_grad_(True) for n, (shape, std) in shapes.items()}
        x = rnd(N, C).double().requires_grad_(True)
        dout = rnd(N, C).double()

        out, aux, z, kept, top, probs = moe_layer(x, params, E, k, G, cf, renorm, aux_c, z_c)
        # The C++ side picks the top k in float32: the choices (and their order, which sets
        # the slots' priority) must not hang on a difference float32 cannot resolve.
        ranked = torch.sort(probs.detach(), dim=-1, descending=True).values
        margin = (ranked[:, :-1] - ranked[:, 1:])[:, :min(k, E - 1)].min().item()
        assert margin > 1e-5, f"{name}: top-{k} margin {margin} too small for float32; change the seed"
        dropped = N * k - int(kept.sum())
        if cf > 0:
            assert dropped > 0, f"{name}: meant to drop assignments but drops none"
        (torch.sum(out * dout) + scale * (aux + z)).backward()

        t[pre + "x"], t[pre + "dout"] = x.detach(), dout
        for n, v in params.items():
            t[pre + n] = v.detach()
            t["grad/" + pre + n] = v.grad
        for n, v in {"capacity_factor": cf, "aux_loss": aux_c, "z_loss": z_c, "aux_grad_scale": scale}.items():
            t[pre + n] = torch.tensor([v])
        t[pre + "out"], t[pre + "dx"] = out.detach(), x.grad
        t[pre + "aux_loss_value"], t[pre + "z_loss_value"] = aux.detach().reshape(1), z.detach().reshape(1)
        counts = [int(((top == e) & kept).sum()) for e in range(E)]
        t[pre + "tokens_per_expert"] = torch.tensor(counts, dtype=torch.float64)
        t[pre + "dropped"] = torch.tensor([dropped], dtype=torch.float64)
        attrs.update({pre + "C": C, pre + "E": E, pre + "k": k, pre + "H": H, pre + "S": S,
                      pre + "T": T, pre + "group_tokens": group, pre + "renormalize": int(renorm)})
        print(f"{name}: N {N}, tokens per expert {counts}, dropped {dropped}, margin {margin:.2e}, "
              f"aux {aux.item():.6g}, z {z.item():.6g}")
    write_h5(a.out, t, attrs)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
