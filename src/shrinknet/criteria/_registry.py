"""The criteria's registry and the helpers criteria are written with.

It lives apart from :mod:`shrinknet.criteria` so that the built-in criteria (approximate,
brute_force, classic, taylor) can import it while the package's ``__init__`` imports them to
register them: no import cycle (docs/ARCHITECTURE.md, "Layers").
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .._validation import ShrinkNetError, non_finite_score
from ..context import PruningContext


@dataclass(frozen=True)
class Criterion:
    """A named ranking strategy: ``scores(ctx)``, and optionally a cheaper ``best(ctx)`` (the top choice
    of an iterative step, or None; in a cost-aware prune, ``ctx.costs`` set, the choice of :func:`ranked`
    with those costs)."""
    name: str
    scores: Callable
    description: str = ""
    best: Callable | None = None

    def __call__(self, model, X=None, T=None, loss: str = "sse") -> list[torch.Tensor]:
        """Scores in a context, or (older form) of a gated model on (X, T) as it is."""
        if X is None:
            return self.scores(model)
        # on a copy: a criterion may switch units off and back on its context's model
        return self.scores(PruningContext(model.clone(), X, T, loss))


_REGISTRY: dict[str, Criterion] = {}


def _takes_context(fn) -> bool:
    # the older form takes (model, X, T, loss), loss perhaps with a default
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) < 4


def as_criterion(fn, name: str | None = None, description: str = "", best=None) -> Criterion:
    """A Criterion from a function of the context (or of (model, X, T, loss))."""
    if isinstance(fn, Criterion):
        return fn if name is None or name == fn.name else dataclasses.replace(fn, name=name)
    if not callable(fn):
        raise ShrinkNetError(f"criterion: expected a name or a callable, got {fn!r}")
    scores = fn if _takes_context(fn) else (lambda ctx: fn(ctx.model, ctx.X, ctx.T, ctx.loss))
    return Criterion(name or getattr(fn, "__name__", "custom"), scores,
                     description or (fn.__doc__ or "").strip().split("\n")[0], best)


def register_criterion(name: str, fn: Callable | None = None, *, description: str = "", overwrite: bool = False,
                       best: Callable | None = None):
    """Register ``fn`` (a function of the pruning context) under ``name``; usable as a decorator.
    ``best``: optional cheaper route to the top choice of an iterative step."""
    def deco(f):
        if name in _REGISTRY and not overwrite:
            raise ShrinkNetError(f"criterion {name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[name] = as_criterion(f, name, description, best)
        return f
    return deco(fn) if fn is not None else deco


def get_criterion(name_or_fn) -> Criterion:
    """The criterion of that name (or a Criterion wrapping a callable)."""
    if isinstance(name_or_fn, str):
        if name_or_fn not in _REGISTRY:
            raise ShrinkNetError(f"unknown criterion {name_or_fn!r}: expected one of {', '.join(available_criteria())}")
        return _REGISTRY[name_or_fn]
    return as_criterion(name_or_fn, criterion_name(name_or_fn))


def available_criteria() -> list[str]:
    return sorted(_REGISTRY)


def describe_criteria() -> dict[str, str]:
    return {k: _REGISTRY[k].description for k in available_criteria()}


def criterion_name(c) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, Criterion):
        return c.name
    for k, v in _REGISTRY.items():
        if v.scores is c:
            return k
    return getattr(c, "__name__", "custom")


def mark_removed(model, scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Set NaN where the gate is 0, so removed units are never ranked."""
    return [torch.where(g != 0, s, torch.full_like(s, float("nan"))) for g, s in zip(model.gates, scores)]


def by_group(ctx, fn) -> list[torch.Tensor]:
    """[scores of group l] with fn(l, active units of l) for the active units, NaN elsewhere."""
    out = []
    for l, g in enumerate(ctx.model.gates):
        s = torch.full_like(g, float("nan"))
        units = torch.nonzero(g != 0).flatten()
        if units.numel():
            s[units] = fn(l, units)
        out.append(s)
    return out


def check_scores(scores, model, name: str) -> list[torch.Tensor]:
    """A criterion's scores checked (one (K_l,) finite array per group) and NaN where removed."""
    if len(scores) != model.n_hidden_layers:
        raise ShrinkNetError(f"criterion {name!r}: expected {model.n_hidden_layers} score arrays "
                             f"(one per hidden layer), got {len(scores)}")
    out = []
    for l, (s, g) in enumerate(zip(scores, model.gates)):
        s = torch.as_tensor(s, dtype=g.dtype, device=g.device)
        if s.shape != g.shape:
            raise ShrinkNetError(f"criterion {name!r}: expected scores of shape {tuple(g.shape)} for hidden "
                                 f"layer {l}, got {tuple(s.shape)}")
        bad = torch.nonzero((g != 0) & ~torch.isfinite(s)).flatten()
        if bad.numel():
            raise non_finite_score(name, l, int(bad[0]))
        out.append(torch.where(g != 0, s, torch.full_like(s, float("nan"))))
    return out


def ranked(scores: list[torch.Tensor], costs=None) -> list[tuple[int, int, float]]:
    """Active (layer, unit, score), lowest score first; ties by lowest (layer, unit).

    ``costs`` (one number per group: what removing one of its units saves, in parameters or FLOPs):
    the cost-aware order instead. Units whose score is <= 0 first, lowest first; then the others by
    score / cost (a cost <= 0: last), equal ratios by score, then by (layer, unit)."""
    flat = torch.cat(scores).detach().cpu().numpy()
    index = [(l, u) for l, s in enumerate(scores) for u in range(s.numel())]
    if costs is None:
        order = np.argsort(np.where(np.isnan(flat), np.inf, flat), kind="stable")
    else:
        if len(costs) != len(scores):
            raise ShrinkNetError(f"costs: expected one per unit group ({len(scores)}), got {len(costs)}")
        s = flat.astype(np.float64)
        c = np.concatenate([np.full(t.numel(), float(k)) for t, k in zip(scores, costs)])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(s <= 0, s, np.where(c > 0, s / c, np.inf))
        # lexsort: the last key first; NaN (removed) sort last within each, then are left out
        order = np.lexsort((s, ratio, s > 0))
    return [(*index[i], float(flat[i])) for i in order if not np.isnan(flat[i])]

