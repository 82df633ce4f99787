"""The mixture-of-experts layer (core/layers/moe.h, core/layers/moe_router.h) written
independently with torch autograd, in the dtype of its inputs: the layer's reference
(make_moe_reference.py, float64) and the MoE GPT-2's (make_moe_gpt2_reference.py, float32
and float64) share it, so both check one statement of the rules:

softmax over E, top-k best first with ties to the lower index, optional renormalisation
of the k weights, capacity ceil(cf G k / E) per expert per group claimed by first choices
in token order, then second choices; load balancing E sum_e f_e P_e per group (f from all
assignments before drops, a count without gradient), its mean over groups, times
aux_coef; z-loss mean(lse^2) times z_coef; experts GELU(tanh) MLPs with biases, and an
always-on shared GELU MLP when its parameters are present.
"""
import math

import torch
import torch.nn.functional as F


def kept_assignments(top, N, G, E, k, cap):
    """[N, k] bool: which assignments get a slot (first choices of a group, in token
    order, before its second choices)."""
    kept = torch.zeros(N, k, dtype=torch.bool)
    for g0 in range(0, N, G):
        used = [0] * E
        for j in range(k):
            for n in range(g0, g0 + G):
                e = int(top[n, j])
                if cap is None or used[e] < cap:
                    kept[n, j] = True
                    used[e] += 1
    return kept


def moe_layer(x, p, E, k, G, cf, renormalize, aux_coef, z_coef):
    """x [N, C] (N tokens in groups of G consecutive rows); p: name -> tensor, the layer's
    parameter names (router.weight, experts.fc, ..., shared.* when present). Returns out
    [N, C], aux_loss, z_loss (times their coefficients), kept [N, k], top [N, k], probs [N, E]."""
    N, _ = x.shape
    logits = x @ p["router.weight"].t()
    probs = torch.softmax(logits, dim=-1)
    lse = torch.logsumexp(logits, dim=-1)
    # A stable descending sort keeps the lower index first among equal probabilities.
    top = torch.sort(probs.detach(), dim=-1, descending=True, stable=True).indices[:, :k]
    weight = probs.gather(1, top)
    if renormalize:
        weight = weight / weight.sum(dim=-1, keepdim=True)
    cap = math.ceil(cf * G * k / E) if cf > 0 else None
    kept = kept_assignments(top, N, G, E, k, cap)

    out = torch.zeros_like(x)
    for e in range(E):
        n_idx, j_idx = ((top == e) & kept).nonzero(as_tuple=True)
        if n_idx.numel() == 0:
            continue
        h = F.gelu(x[n_idx] @ p["experts.fc"][e].t() + p["experts.fc_bias"][e], approximate="tanh")
        y = h @ p["experts.proj"][e].t() + p["experts.proj_bias"][e]
        out = out.index_add(0, n_idx, weight[n_idx, j_idx].unsqueeze(1) * y)
    if "shared.fc.weight" in p:
        h = F.gelu(x @ p["shared.fc.weight"].t() + p["shared.fc.bias"], approximate="tanh")
        out = out + h @ p["shared.proj.weight"].t() + p["shared.proj.bias"]

    balance = []
    for g0 in range(0, N, G):
        frac = torch.bincount(top[g0:g0 + G].reshape(-1), minlength=E).to(probs.dtype) / (G * k)
        balance.append(E * (frac * probs[g0:g0 + G].mean(dim=0)).sum())
    aux = aux_coef * torch.stack(balance).mean()
    z = z_coef * (lse ** 2).mean()
    return out, aux, z, kept, top, probs
