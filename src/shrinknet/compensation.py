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

Any other gated model is compensated where each unit feeds one linear layer: a transformer's FFN
neuron (a column of the second projection) or attention head (a block of the output projection's
columns); the *consumer*'s input columns play the next layer's part (Kwon et al. 2022's mask tuning
refits the same layer; FLAP's bias compensation is `mean`). Its gate hook moves the unit's columns
x by ``x - (1 - g) r(x)``, r the residual, while ``GatedModel.compensating(residual_maps(...))`` is
on, so the oracle, the Taylor criteria and their derivatives see the compensated removal through the
gates alone.

Every function takes what it needs (the model, its kept pass or its data, the mode); each model
kind's evaluator (:mod:`shrinknet.evaluators`) calls the ones for its kind and keeps their statistics
for the run.
"""
from __future__ import annotations

import torch

from . import distributed as dist
from ._validation import ShrinkNetError, check_choice
from .blocks import weight_oi

MODES = ("none", "mean", "lstsq")
RIDGE = 1e-9  # relative ridge on the Gram matrix, so collinear or dead units stay solvable


def check_mode(mode: str) -> str:
    """The mode, checked against :data:`MODES`."""
    return check_choice(mode, MODES, "compensation")


def check_consumers(mode: str, model) -> str:
    """``mode``, checked for a gated model (not the MLP): every unit must feed one linear layer with a
    bias (transformer FFN neurons and heads) unless the mode is "none"."""
    mode = check_mode(mode)
    if mode == "none":
        return mode
    mods = dict(model.model.named_modules())
    for u in model.units:
        if getattr(u, "branch", None) is not None:
            if mode != "mean":
                raise ShrinkNetError(f"compensation {mode!r}: a whole sublayer ({u.name!r}) has no consumer to refit; "
                                     f"expected 'none' or 'mean' (its mean output takes its place)")
            continue
        if getattr(u, "site", None) is None:
            raise ShrinkNetError(f"compensation {mode!r}: works on shrinknet.MLP and on transformer units (FFN "
                                 f"neurons, attention heads), which feed one linear layer; expected 'none' for "
                                 f"units of {u.name!r}")
        if getattr(mods[u.site.consumer], "bias", None) is None:
            raise ShrinkNetError(f"compensation {mode!r}: folds into the bias of {u.site.consumer!r}, which has "
                                 f"none; expected compensation='none' for units of {u.name!r}")
    return mode


def _design(cache, layer: int, active: torch.Tensor):
    """[outputs of the active neurons, 1] in float64 (N, K+1), and the inverse of its Gram matrix."""
    o = cache.out[layer][:, active].to(torch.float64)
    A = torch.cat([o, torch.ones(o.shape[0], 1, dtype=o.dtype, device=o.device)], 1)
    G = dist.sum_(A.T @ A)                      # over every rank's samples
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
        return o - _mean(o)
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


def _mean(o: torch.Tensor) -> torch.Tensor:
    """The mean over dim 0 of o, over every rank's samples."""
    s = dist.sum_(torch.cat([o.sum(0, dtype=torch.float64).reshape(-1),
                             torch.tensor([o.shape[0]], dtype=torch.float64, device=o.device)]))
    return (s[:-1] / s[-1]).reshape(o.shape[1:]).to(o.dtype)


@torch.no_grad()
def remove_dense(model, cache, layer: int, unit: int, mode: str, set_gate):
    """Switch neuron ``unit`` of hidden layer ``layer`` of an MLP off (through ``set_gate(layer, unit,
    value)``), compensating in the next layer as ``mode`` says, fitted on ``cache`` (its kept pass,
    before the removal). Returns a function that undoes it."""
    old = float(model.gates[layer][unit])
    if mode == "none":
        set_gate(layer, unit, 0.0)
        return lambda: set_gate(layer, unit, old)
    nxt = model.layers[layer + 1]
    saved = nxt.weight.detach().clone(), nxt.bias.detach().clone()
    if mode == "mean":
        nxt.bias += _mean(cache.out[layer][:, unit]) * nxt.weight[:, unit]
    elif mode == "lstsq":
        active = torch.nonzero(model.gates[layer] != 0).flatten()
        _, Ginv = _design(cache, layer, active)
        p = int(torch.searchsorted(active, torch.tensor(unit, device=active.device)))
        beta = torch.cat([nxt.weight[:, active].T, nxt.bias[None]], 0).to(torch.float64)  # (K+1, R)
        beta -= torch.outer(Ginv[:, p] / Ginv[p, p], beta[p])   # refit without column p
        nxt.weight[:, active] = beta[:-1].T.to(nxt.weight.dtype)
        nxt.bias.copy_(beta[-1].to(nxt.bias.dtype))
    nxt.weight[:, unit] = 0.0
    set_gate(layer, unit, 0.0)

    def undo():
        with torch.no_grad():
            nxt.weight.copy_(saved[0]), nxt.bias.copy_(saved[1])
        set_gate(layer, unit, old)
    return undo


# ---- any gated model whose units feed one linear layer -------------------------------------
@torch.no_grad()
def consumer_stats(model, chunks, mode: str):
    """Per group: (mean of the consumer's un-gated input columns (D,), Gram matrix of [columns, 1]
    (D+1, D+1), or for ``mode`` "mean" zeros), in float64 over every sample and position of the (X, T)
    pieces ``chunks`` (and every rank's)."""
    m = model
    D = [u.size * u.block for u in m.units]
    sums = [torch.zeros(d + 1, dtype=torch.float64, device=g.device) for d, g in zip(D, m.gates)]
    grams = [torch.zeros(d + 1, d + 1, dtype=torch.float64, device=g.device) for d, g in zip(D, m.gates)]
    lstsq = mode == "lstsq"           # (mean needs no Gram matrix: D^2 numbers a group)
    for l, a in m.unit_outputs(chunks):
        x = a.reshape(-1, D[l]).to(torch.float64)
        A = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)
        sums[l] += A.sum(0)
        if lstsq:
            grams[l] += A.T @ A
    sums, grams = [dist.sum_(s) for s in sums], [dist.sum_(G) for G in grams]
    return [(s[:-1] / s[-1], G) for s, G in zip(sums, grams)]


def _active_columns(model, layer: int) -> torch.Tensor:
    u = model.units[layer]
    live = (model.gates[layer] != 0).repeat_interleave(u.block)
    return torch.nonzero(live).flatten()


@torch.no_grad()
def residual_maps(model, stats, mode: str) -> dict:
    """{group: (mean (D,), None) for `mean`, or (None, M (D+1, D)) for `lstsq`}: the residual of the
    consumer's input columns x is x - mean, or [x, 1] @ M (each unit's columns minus their
    least-squares fit on the other active units' columns and a constant; 0 for removed units), from
    ``stats`` (:func:`consumer_stats`)."""
    m, out = model, {}
    for l, (mean, G) in enumerate(stats):
        dt = m.gates[l].dtype
        off = ~(m.gates[l] != 0).repeat_interleave(m.units[l].block)
        if mode == "mean":
            # a unit already switched off stays off: its residual is its whole output (mean 0)
            out[l] = (torch.where(off, torch.zeros_like(mean), mean).to(dt), None)
            continue
        u, D = m.units[l], mean.numel()
        cols = _active_columns(m, l)
        idx = torch.cat([cols, torch.tensor([D], device=cols.device)])       # active columns and the constant
        Gs = G[idx][:, idx]
        Gs += RIDGE * Gs.diagonal().mean() * torch.eye(Gs.shape[0], dtype=Gs.dtype, device=Gs.device)
        Ginv = torch.linalg.inv(Gs)
        M = torch.zeros(D + 1, D, dtype=torch.float64, device=G.device)
        pos = {int(c): i for i, c in enumerate(cols.tolist())}
        for j in torch.nonzero(m.gates[l] != 0).flatten().tolist():
            B = [pos[c] for c in range(j * u.block, (j + 1) * u.block)]
            # residual of block B regressed on the other columns: A Ginv[:, B] Ginv[B, B]^-1
            M[idx, j * u.block:(j + 1) * u.block] = Ginv[:, B] @ torch.linalg.inv(Ginv[B][:, B])
        gone = torch.nonzero(off).flatten()
        M[gone, gone] = 1.0                     # switched-off units stay off: residual = their whole output
        out[l] = (None, M.to(dt))
    return out


@torch.no_grad()
def remove_consumer(model, stats, layer: int, unit: int, mode: str, set_gate):
    """Fold unit ``unit``'s compensation into its consumer (bias, and for lstsq the other columns),
    fitted from ``stats`` (:func:`consumer_stats`), zero its columns and switch it off through
    ``set_gate(layer, unit, value)``; returns the undo."""
    m = model
    u = m.units[layer]
    if getattr(u, "branch", None) is not None:      # a sublayer: what it returns becomes its mean output
        return _remove_sublayer(m, stats, layer, unit, set_gate)
    cons = dict(m.model.named_modules())[u.site.consumer]
    W, b = weight_oi(cons), cons.bias
    saved = W.detach().clone(), b.detach().clone()
    B = torch.arange(unit * u.block, (unit + 1) * u.block, device=W.device)
    mean, G = stats[layer]
    if mode == "mean":
        b += W[:, B] @ mean[B].to(W.dtype)
    else:
        D = mean.numel()
        cols = _active_columns(m, layer)
        others = cols[(cols < B[0]) | (cols > B[-1])]
        O = torch.cat([others, torch.tensor([D], device=cols.device)])
        Go = G[O][:, O]
        Go = Go + RIDGE * Go.diagonal().mean() * torch.eye(Go.shape[0], dtype=Go.dtype, device=Go.device)
        C = torch.linalg.solve(Go, G[O][:, B])             # x_B ~ [x_others, 1] @ C
        WB = W[:, B].to(torch.float64)
        W[:, others] += (WB @ C[:-1].T).to(W.dtype)
        b += (WB @ C[-1]).to(b.dtype)
    W[:, B] = 0.0
    old = float(m.gates[layer][unit])
    set_gate(layer, unit, 0.0)

    def undo():
        with torch.no_grad():
            W.copy_(saved[0]), b.copy_(saved[1])
        set_gate(layer, unit, old)
    return undo


@torch.no_grad()
def _remove_sublayer(model, stats, layer: int, unit: int, set_gate):
    """Switch sublayer group ``layer`` off with its branch's mean output (over samples and positions, from
    ``stats``) as what it returns from now on (the model's ``fill`` buffer, which ``shrink`` gives the
    stub); returns the undo."""
    fill = model._buffers[f"fill{layer}"]
    saved, old = fill.clone(), float(model.gates[layer][unit])
    fill.copy_(stats[layer][0].to(fill.dtype))
    set_gate(layer, unit, 0.0)

    def undo():
        with torch.no_grad():
            fill.copy_(saved)
        set_gate(layer, unit, old)
    return undo
