"""The field's common cheap criteria, behind the same interface.

These are importance scores, not estimates of the change in error: lower = removed first, and only
their ranking matters (``shrinknet.compare`` judges exactly that against the oracle).

    random               seeded uniform scores (the seed is the number of active units, so a run
                         is reproducible and every step draws afresh)
    l1-in, l2-in         norm of the unit's incoming weights (Linear row / Conv2d filter), inputs
                         from removed units masked out
    l1-out, l2-out       norm of its outgoing weights to still-active units (found by the dependency
                         graph for other models: after a flatten, the channel's whole block of columns)
    mean-activation      mean |o| over the samples (and positions, for channels)
    activation-variance  variance of o over the samples
    apoz                 1 - APoZ, the share of samples where the unit is not zero (Hu et al. 2016);
                         meant for ReLU nets, where APoZ is high for idle units (0 for sigmoid nets)

Statistics are of the un-gated output, accumulated in float64. For whole sublayers (``units=["blocks"]``)
the weight norms and apoz mean nothing and are refused by name (:data:`shrinknet.sublayers.REFUSED`).
"""
from __future__ import annotations

import torch

from .. import distributed as dist
from ..sublayers import refuse
from ._registry import mark_removed, register_criterion


@register_criterion("random")
def random_scores(ctx):
    """Seeded random scores (seed = number of active units)."""
    m = ctx.model
    g = torch.Generator().manual_seed(m.n_active())
    return mark_removed(m, [torch.rand(k, generator=g, dtype=torch.float64).to(gt) for k, gt in
                            zip(m.hidden_sizes, m.gates)])


def _norms(ctx, p: int, direction: str):
    m = ctx.model
    refuse(f"l{p}-{direction}", m)                 # whole sublayers have no weights of their own
    fan = m.fan_in if direction == "in" else m.fan_out
    return mark_removed(m, [fan(l).abs().pow(p).sum(1).pow(1 / p).to(g.dtype) for l, g in enumerate(m.gates)])


for _p in (1, 2):
    for _d in ("in", "out"):
        register_criterion(f"l{_p}-{_d}", (lambda p, d: lambda ctx: _norms(ctx, p, d))(_p, _d),
                           description=f"L{_p} norm of the unit's {'incoming' if _d == 'in' else 'outgoing'} weights")


@torch.no_grad()
def moments(ctx) -> dict:
    """Per group, over the samples (and positions): sums of |o|, o, o^2, (o != 0), and the count."""
    m = ctx.model
    acc = {k: [torch.zeros(n, dtype=torch.float64, device=g.device) for n, g in zip(m.hidden_sizes, m.gates)]
           for k in ("abs", "s", "s2", "nz", "n")}
    for l, a in ctx.unit_outputs():
        dim = m.channel_dim(l) % a.ndim
        rest = [d for d in range(a.ndim) if d != dim]
        a = a.double()
        acc["abs"][l] += a.abs().sum(rest)
        acc["s"][l] += a.sum(rest)
        acc["s2"][l] += (a * a).sum(rest)
        acc["nz"][l] += (a != 0).double().sum(rest)
        acc["n"][l] += a.numel() / a.shape[dim]
    return {k: [dist.sum_(v) for v in vs] for k, vs in acc.items()}


def _stat(ctx, fn):
    acc = moments(ctx)
    m = ctx.model
    return mark_removed(m, [fn({k: v[l] for k, v in acc.items()}).to(g.dtype) for l, g in enumerate(m.gates)])


@register_criterion("mean-activation")
def mean_activation(ctx):
    """Mean |o| of the unit over the samples."""
    return _stat(ctx, lambda a: a["abs"] / a["n"])


@register_criterion("activation-variance")
def activation_variance(ctx):
    """Variance of the unit's output over the samples."""
    return _stat(ctx, lambda a: (a["s2"] / a["n"] - (a["s"] / a["n"]) ** 2).clamp_min(0))


@register_criterion("apoz")
def apoz(ctx):
    """1 - average percentage of zeros (for ReLU nets): idle units first."""
    refuse("apoz", ctx.model)
    return _stat(ctx, lambda a: a["nz"] / a["n"])
