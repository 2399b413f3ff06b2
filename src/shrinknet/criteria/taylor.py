"""Taylor estimates of dE_k, the change in error when unit k's output o_k goes to 0.

    taylor1        dE1_k = - sum_n o_kn dE_n/do_kn                       (Skeletonization-style)
    taylor2        dE2_k = dE1_k + 1/2 sum_n o_kn^2 d2E_n/do_kn^2          (the paper's)
                   with d2E/do^2 from the run's evaluator (``ctx.unit_derivatives``): for the MLP
                   the paper's OBD-style diagonal back-propagation, for any other model the
                   Gauss-Newton diagonal (exact on piecewise-linear nets); see derivatives.py.
    taylor2-exact  the same expansion with the exact second derivative along the removal (cross
                   terms kept), from the oracle.
    taylor2-mean / taylor2-median
                   the paper's optional thresholding: second-order estimates that lie more than 3
                   standard deviations (mean) or 3 scaled MADs (median) from the mean / median of
                   all remaining units' estimates are replaced by that mean / median.
    taylor1-abs    |sum_n o dE/do| (Molchanov et al. 2017), with o the output itself.
    fisher         1/2 g^2 sum_n (dE_n/dg)^2 (Kwon et al. 2022): the second-order term with the
                   empirical Fisher information's diagonal standing in for the Hessian, and no
                   first-order term (taken as 0 at a trained optimum).

With gates g != 1 the output is o = g f(x), so these are Taylor expansions in o around the current
(gated) output, as the paper's are. With compensation on (see compensation.py) the removal moves o
by its residual u instead of by o, and o is replaced by u.
"""
from __future__ import annotations

import torch

from .. import derivatives, oracle
from ._registry import by_group, mark_removed, register_criterion

#: outliers for thresholding: farther than this many (robust) standard deviations
OUTLIER_SIGMAS = 3.0


def _taylor(ctx, second: bool):
    first, curvature = ctx.unit_derivatives(second)
    out = []
    for d, c in zip(first, curvature):
        s = -d
        if second:
            s = s + 0.5 * c
        out.append(s)
    return mark_removed(ctx.model, out)


def threshold(scores: list[torch.Tensor], how: str, sigmas: float = OUTLIER_SIGMAS) -> list[torch.Tensor]:
    """Replace outlying estimates (pooled over all groups) by their mean or median."""
    flat = torch.cat([s.flatten() for s in scores])
    v = flat[~torch.isnan(flat)]
    if v.numel() < 2:
        return scores
    if how == "mean":
        center, spread = v.mean(), v.std()
    else:
        center = v.median()
        spread = 1.4826 * (v - center).abs().median()       # MAD scaled to a normal's sigma
    if spread == 0:
        return scores
    return [torch.where((s - center).abs() > sigmas * spread, center, s) for s in scores]


@register_criterion("taylor1")
def taylor1(ctx):
    """First-order Taylor estimate -sum o dE/do (Skeletonization-style)."""
    return _taylor(ctx, second=False)


@register_criterion("taylor2")
def taylor2(ctx):
    """Second-order Taylor estimate (MLP: the paper's OBD diagonal; other models: Gauss-Newton)."""
    return _taylor(ctx, second=True)


@register_criterion("taylor2-exact")
def taylor2_exact(ctx):
    """Second-order Taylor estimate with the exact second derivative along the removal."""
    def estimate(l, units):
        d1, d2 = oracle.removal_derivatives(ctx, l, units)
        return (d1 + 0.5 * d2).to(ctx.model.gates[l].dtype)
    return by_group(ctx, estimate)


@register_criterion("taylor2-mean")
def taylor2_mean(ctx):
    """taylor2 with outlying estimates (> 3 std from the mean) set to the mean."""
    return threshold(taylor2(ctx), "mean")


@register_criterion("taylor2-median")
def taylor2_median(ctx):
    """taylor2 with outlying estimates (> 3 scaled MAD from the median) set to the median."""
    return threshold(taylor2(ctx), "median")


@register_criterion("taylor1-abs")
def taylor1_abs(ctx):
    """|sum_n o dE/do| (Molchanov et al. 2017)."""
    first, _ = ctx.unit_derivatives(second=False, compensated=False)
    return mark_removed(ctx.model, [d.abs() for d in first])


@register_criterion("fisher")
def fisher(ctx):
    """Fisher estimate 1/2 g^2 sum_n (dE_n/dg)^2 (Kwon et al. 2022; the plain gate, no compensation)."""
    F = derivatives.fisher(ctx.model, ctx.chunks(derivatives.samples_per_pass(ctx.model)), ctx.loss)
    return mark_removed(ctx.model, [0.5 * g * g * f for g, f in zip(ctx.model.gates, F)])
