"""The exact oracle: the error of the net with units switched off, for any gated model.

Entry points (each takes a :class:`shrinknet.context.PruningContext`):

* :func:`current_error` -- E of the net as it is;
* :func:`errors_without` -- E after switching each candidate of a group off (with the context's
  compensation), exactly;
* :func:`errors_with_gains` -- E with each candidate's gate set to a given gain (gain sweeps);
* :func:`removal_derivatives` -- first and second derivative of E along each candidate's removal;
* :class:`Stepper` -- the lowest E of the next step of an iterative prune, kept up to date from step
  to step;
* :func:`literal_errors` -- the definition, one full forward pass per candidate: the reference the
  tests compare every path with.

How: for a layered model (the MLP) a removal moves the next layer's pre-activations by a rank-1 term,
so all candidates of a layer are evaluated at once from the cached activations, only downstream of
the unit, and on the CPU by a compiled kernel (:mod:`.rank1`, :mod:`.kernel`). For any other model all
candidates of a group run in one batched forward pass with per-sample gate rows (:mod:`.replicated`).
The choice is made here, from ``ctx.model.layered``; callers never see it.
"""
from __future__ import annotations

import functools

import torch

from .. import compensation
from .. import distributed as dist
from . import rank1, replicated
from .literal import literal_error, literal_errors
from .stepper import Stepper


def current_error(ctx) -> torch.Tensor:
    """E of the context's model as it is (0-d tensor), summed exactly as :func:`errors_without` sums
    every candidate's E, so that a candidate that changes nothing scores exactly 0."""
    return ctx.error()


def _reported(fn):
    """``fn(ctx, layer, units, ...)`` that tells ``ctx.on_candidates`` how many candidates it scored."""
    @functools.wraps(fn)
    def wrapper(ctx, layer, units, *args):
        out = fn(ctx, layer, units, *args)
        if ctx.on_candidates is not None:
            ctx.on_candidates(len(units))
        return out
    return wrapper


@_reported
def errors_without(ctx, layer: int, units) -> torch.Tensor:
    """E after switching each of ``units`` of group ``layer`` off, with the context's compensation; (C,)."""
    m = ctx.model
    units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
    if not m.layered:
        with compensation.compensating(ctx):
            return replicated.errors_without(ctx, layer, units)
    cache = ctx.cache()
    dh = -compensation.residuals(m, cache, layer, units, ctx.compensation)   # plain removal: -o
    return dist.sum_(rank1.errors_for_changes(m, cache, ctx.T, ctx.loss, layer, units, dh))


@_reported
def errors_with_gains(ctx, layer: int, units, gains) -> torch.Tensor:
    """E with gate ``layer`` of unit units[c] set to gains[c] (all else as it is), for every c; (C,)."""
    m = ctx.model
    if not m.layered:
        return replicated.errors_with_gains(ctx, layer, units, gains)
    return dist.sum_(rank1.perturbed_errors(m, ctx.cache(), ctx.T, ctx.loss, layer, units, gains))


@_reported
def removal_derivatives(ctx, layer: int, units):
    """(psi'(0), psi''(0)) per candidate for psi(t) = E with the candidate's removal scaled by t (t = 1:
    removed, with the context's compensation); exact, every cross term downstream included."""
    m = ctx.model
    units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
    if not m.layered:
        with compensation.compensating(ctx):
            return replicated.removal_derivatives(ctx, layer, units)
    cache = ctx.cache()
    u = compensation.residuals(m, cache, layer, units, ctx.compensation)
    d1, d2 = rank1.output_scaling_derivatives(m, cache, ctx.T, ctx.loss, layer, units, direction=u)
    return -dist.sum_(d1), dist.sum_(d2)


__all__ = ["Stepper", "current_error", "errors_with_gains", "errors_without", "literal_error", "literal_errors",
           "removal_derivatives"]
