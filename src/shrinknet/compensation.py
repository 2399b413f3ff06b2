"""Compensation without retraining: what the next layer does when a neuron goes.

    none   the paper's setting: the neuron's output becomes 0.
    mean   mean replacement: the neuron's mean output on the evaluation data, times its outgoing
           weights, is folded into the next layer's bias.
    lstsq  least-squares refit: the next layer's weights on the remaining neurons (and its bias)
           are refit to reproduce its current pre-activations on the evaluation data.

Both compensations leave the next layer's pre-activations changed by a rank-1 term, like plain
removal, with the neuron's output o_k replaced by its *residual*: o_k - mean(o_k) for `mean`, and
o_k minus its least-squares projection on the other active neurons and a constant for `lstsq`.
So the fast oracle and the Taylor estimates score candidates with compensation on by using
that residual as the neuron's change; :func:`remove` then changes the weights to match.
"""
from __future__ import annotations

import torch

from ._validation import check_choice
from .models import MLP, Cache

MODES = ("none", "mean", "lstsq")
RIDGE = 1e-9  # relative ridge on the Gram matrix, so collinear or dead units stay solvable


def mode_of(model) -> str:
    return getattr(model, "compensation", "none")


def check_mode(mode: str) -> str:
    return check_choice(mode, MODES, "compensation")


def _design(cache: Cache, layer: int, active: torch.Tensor):
    """[outputs of the active neurons, 1] in float64 (N, K+1), and the inverse of its Gram matrix."""
    o = cache.out[layer][:, active].to(torch.float64)
    A = torch.cat([o, torch.ones(o.shape[0], 1, dtype=o.dtype, device=o.device)], 1)
    G = A.T @ A
    G += RIDGE * G.diagonal().mean() * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return A, torch.linalg.inv(G)


@torch.no_grad()
def residuals(model: MLP, cache: Cache, layer: int, units: torch.Tensor, mode: str | None = None) -> torch.Tensor:
    """(N, C): for each candidate, the part of its output the next layer loses when it is removed."""
    mode = mode or mode_of(model)
    o = cache.out[layer][:, units]
    if mode == "none":
        return o
    if mode == "mean":
        return o - o.mean(0)
    active = torch.nonzero(model.gates[layer] != 0).flatten()
    A, Ginv = _design(cache, layer, active)
    pos = torch.searchsorted(active, units)                 # candidates' columns in A
    # residual of column p regressed on the other columns = A Ginv e_p / Ginv_pp
    r = (A @ Ginv[:, pos]) / Ginv[pos, pos]
    return r.to(o.dtype)


@torch.no_grad()
def remove(model: MLP, cache: Cache, layer: int, unit: int, mode: str | None = None) -> None:
    """Switch neuron (layer, unit) off, compensating in the next layer as `mode` says.
    `cache` must be model.cache(X) on the evaluation data, before the removal."""
    mode = mode or mode_of(model)
    if mode == "none":
        model.set_gate(layer, unit, 0.0)
        return
    nxt = model.layers[layer + 1]
    if mode == "mean":
        nxt.bias += cache.out[layer][:, unit].mean() * nxt.weight[:, unit]
    elif mode == "lstsq":
        active = torch.nonzero(model.gates[layer] != 0).flatten()
        _, Ginv = _design(cache, layer, active)
        p = int(torch.searchsorted(active, torch.tensor(unit, device=active.device)))
        beta = torch.cat([nxt.weight[:, active].T, nxt.bias[None]], 0).to(torch.float64)  # (K+1, R)
        beta -= torch.outer(Ginv[:, p] / Ginv[p, p], beta[p])   # refit without column p
        nxt.weight[:, active] = beta[:-1].T.to(nxt.weight.dtype)
        nxt.bias.copy_(beta[-1].to(nxt.bias.dtype))
    nxt.weight[:, unit] = 0.0
    model.set_gate(layer, unit, 0.0)
