"""The exact oracle: the error of the net with units switched off, for any gated model.

Entry points (each takes a :class:`shrinknet.context.PruningContext`):

* :func:`current_error` -- E of the net as it is;
* :func:`errors_without` -- E after switching each candidate of a group off (with the context's
  compensation), exactly;
* :func:`errors_with_gains` -- E with each candidate's gate set to a given gain (gain sweeps);
* :func:`removal_derivatives` -- first and second derivative of E along each candidate's removal;
* :func:`best` -- the lowest E of the next step of an iterative prune, where the evaluator has a
  faster route to it than scoring every unit (the MLP's :class:`Stepper`, kept up to date from step
  to step);
* :func:`literal_errors` -- the definition, one full forward pass per candidate: the reference the
  tests compare every path with;
* :func:`flops_floor` -- the FLOPs the general oracle cannot avoid against the literal loop's
  (:mod:`.floor`), what its measured speed is held against.

How: each model kind's evaluator (:mod:`shrinknet.evaluators`, chosen once per run and kept in the
context as ``ctx.evaluator``) computes them: for the MLP by rank-1 updates of the kept pass and the
compiled kernel (:mod:`.rank1`, :mod:`.kernel`), for any other model with every candidate of a group
in one batched forward pass with per-sample gate rows (:mod:`.replicated`). Callers never see which.
"""
from __future__ import annotations

import functools

import torch

from .floor import Floor, flops_floor
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
    return ctx.evaluator.errors_without(ctx, layer, units)


@_reported
def errors_with_gains(ctx, layer: int, units, gains) -> torch.Tensor:
    """E with gate ``layer`` of unit units[c] set to gains[c] (all else as it is), for every c; (C,)."""
    return ctx.evaluator.errors_with_gains(ctx, layer, units, gains)


@_reported
def removal_derivatives(ctx, layer: int, units):
    """(psi'(0), psi''(0)) per candidate for psi(t) = E with the candidate's removal scaled by t (t = 1:
    removed, with the context's compensation); exact, every cross term downstream included."""
    return ctx.evaluator.removal_derivatives(ctx, layer, units)


def best(ctx):
    """(layer, unit, E without it - E now) of the exact choice of the next iterative step, where the
    run's evaluator has a faster route to it than scoring every unit (the MLP's stepper); else None."""
    return ctx.evaluator.best(ctx)


__all__ = ["Floor", "Stepper", "best", "current_error", "errors_with_gains", "errors_without", "flops_floor",
           "literal_error", "literal_errors", "removal_derivatives"]
