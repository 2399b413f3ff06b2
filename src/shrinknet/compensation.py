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

from ._validation import ShrinkNetError, check_choice

MODES = ("none", "mean", "lstsq")
RIDGE = 1e-9  # relative ridge on the Gram matrix, so collinear or dead units stay solvable


def check_mode(mode: str, model=None) -> str:
    """The mode, checked; with ``model``, also that it can be compensated (a stack of dense layers)."""
    mode = check_choice(mode, MODES, "compensation")
    if mode != "none" and model is not None and not model.layered:
        raise ShrinkNetError(f"compensation {mode!r}: works on shrinknet.MLP only; expected 'none' for "
                             f"{type(model).__name__}")
    return mode


def _design(cache, layer: int, active: torch.Tensor):
    """[outputs of the active neurons, 1] in float64 (N, K+1), and the inverse of its Gram matrix."""
    o = cache.out[layer][:, active].to(torch.float64)
    A = torch.cat([o, torch.ones(o.shape[0], 1, dtype=o.dtype, device=o.device)], 1)
    G = A.T @ A
    G += RIDGE * G.diagonal().mean() * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return A, torch.linalg.inv(G)


@torch.no_grad()
def residuals(model, cache, layer: int, units: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, C): for each candidate, the part of its output the next layer loses when it is removed
    (an MLP and its cached forward pass)."""
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
def removed_outputs(model, cache, layer: int, mode: str) -> torch.Tensor:
    """(N, K): what every unit of `layer` would take from the next layer if it were removed (its
    residual); zero for units already removed."""
    if mode == "none":
        return cache.out[layer]                 # a removed unit's output is 0 already
    u = torch.zeros_like(cache.out[layer])
    units = torch.nonzero(model.gates[layer] != 0).flatten()
    if units.numel():
        u[:, units] = residuals(model, cache, layer, units, mode)
    return u


@torch.no_grad()
def remove(ctx, layer: int, unit: int):
    """Switch unit (layer, unit) of the context's model off, compensating in the next layer as
    ``ctx.compensation`` says (fitted on the context's data, before the removal). Returns a function
    that undoes it (the gate and the next layer's weights as they were)."""
    mode, model = ctx.compensation, ctx.model
    old = float(model.gates[layer][unit])
    if mode == "none":
        ctx.set_gate(layer, unit, 0.0)
        return lambda: ctx.set_gate(layer, unit, old)
    cache = ctx.cache()
    nxt = model.layers[layer + 1]
    saved = nxt.weight.detach().clone(), nxt.bias.detach().clone()
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
    ctx.set_gate(layer, unit, 0.0)

    def undo():
        with torch.no_grad():
            nxt.weight.copy_(saved[0]), nxt.bias.copy_(saved[1])
        ctx.set_gate(layer, unit, old)
    return undo
