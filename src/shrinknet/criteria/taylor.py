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
    taylor2-sampled
                   taylor1 + 1/2 g^2 x (an unbiased estimate of the Gauss-Newton diagonal): taylor2's
                   value on models other than the MLP in expectation, at one backward pass per batch
                   and draw instead of one per output and position (labels drawn from the model's own
                   prediction; see derivatives.gauss_newton_sampled). Seeded: the same scores on a
                   rerun, on every rank and after a resume. ``sampled_taylor2(draws=, seed=)`` makes
                   one with more draws (less noise).

With gates g != 1 the output is o = g f(x), so these are Taylor expansions in o around the current
(gated) output, as the paper's are. With compensation on (see compensation.py) the removal moves o
by its residual u instead of by o, and o is replaced by u.
"""
from __future__ import annotations

import warnings

import torch

from .. import derivatives, oracle
from .._validation import ShrinkNetError
from ._registry import Criterion, by_group, mark_removed, register_criterion

#: taylor2 warns when it takes more than this many times fisher's backward passes
COSTLY = 20

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


def _warn_cost(ctx) -> None:
    """Say up front when taylor2's Gauss-Newton diagonal (one backward pass per output and position)
    will cost far more than fisher's one pass per batch."""
    n = ctx.evaluator.second_order_passes(ctx)
    if n is None or ctx.state.get("taylor2: warned"):
        return                      # (the MLP's closed-form diagonal takes none)
    if n > COSTLY:
        ctx.state["taylor2: warned"] = True
        shape = " x ".join(map(str, ctx.out_shape))
        warnings.warn(f"taylor2 takes {n} backward passes per batch of samples (1 + one per output of the {shape} "
                      f"output) where fisher takes 1 ({n}x), at every step; 'taylor2-sampled' estimates the same "
                      f"value at 2 passes per batch", stacklevel=2)


@register_criterion("taylor2")
def taylor2(ctx):
    """Second-order Taylor estimate (MLP: the paper's OBD diagonal; other models: Gauss-Newton)."""
    _warn_cost(ctx)
    return _taylor(ctx, second=True)


def sampled_taylor2(draws: int = 1, seed: int = 0, name: str | None = None) -> Criterion:
    """taylor1 + 1/2 g^2 x (the Gauss-Newton diagonal estimated from ``draws`` seeded draws of the
    outputs' curvature): ``taylor2``'s value in expectation on models other than the MLP, at
    1 + ``draws`` backward passes per batch whatever the number of outputs and positions.
    (On the MLP class, where taylor2 is the paper's OBD diagonal, this is the Gauss-Newton one.)

    Pass the result as ``criterion=``; ``"taylor2-sampled"`` is ``sampled_taylor2()``."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ShrinkNetError(f"draws: expected a whole number >= 1, got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ShrinkNetError(f"seed: expected a whole number >= 0, got {seed!r}")

    def scores(ctx):
        m = ctx.model
        if ctx.compensation != "none" and not ctx.evaluator.compensates_through_gates:
            raise ShrinkNetError(f"criterion taylor2-sampled: expected compensation='none' on the MLP class, got "
                                 f"{ctx.compensation!r} (its taylor2 is exact and cheap there: use taylor2)")
        # the step (units already off) keys the draws, so a resumed run draws what the first run drew
        step = sum(int((g == 0).sum()) for g in m.gates)
        with ctx.evaluator.compensated(ctx):
            grads, gns = derivatives.gauss_newton_sampled(m, ctx.chunks(derivatives.samples_per_pass(m)), ctx.loss,
                                                          draws, seed, step)
        return mark_removed(m, [-g * d + 0.5 * g * g * h for g, d, h in zip(m.gates, grads, gns)])

    name = name or ("taylor2-sampled" if (draws, seed) == (1, 0) else f"taylor2-sampled-{draws}-{seed}")
    return Criterion(name, scores, f"taylor2 estimated from {draws} seeded draw(s) of the Gauss-Newton diagonal "
                     f"(the same in expectation, 1 + {draws} backward passes per batch whatever the outputs)")


register_criterion("taylor2-sampled", sampled_taylor2().scores,
                   description="taylor1 + an unbiased one-draw estimate of taylor2's Gauss-Newton diagonal "
                   "(labels drawn from the model's own outputs, seeded): 2 backward passes per batch whatever "
                   "the vocabulary and positions")


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
