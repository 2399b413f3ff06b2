"""Pruning criteria, looked up by name.

A criterion is a function ``fn(model, X, T, loss) -> list[Tensor]``: for every hidden
layer (unit group) l, a (K_l,) tensor with the estimated change in error E when that neuron is
switched off (gate set to 0), NaN for neurons already removed. Lower = better to remove.
The pruning loop only ever calls criteria through this signature, and one optional hook: a
criterion may carry ``fn.serial(model, X, T, loss) -> session``, whose ``session.best()`` returns
the (layer, unit, score) that ranks first at the current step (or None to fall back on scoring
every neuron). An iterative prune creates one session and asks it at every step; ``brute-force``
uses this to keep work from step to step (:mod:`shrinknet.serial`).

A name can have two implementations: one for the :class:`~shrinknet.MLP` class (closed forms, the
fast oracle) and one for any other model wrapped in a :class:`~shrinknet.gating.GatedModel`
(autograd on the gates; see :mod:`shrinknet.criteria.generic`). ``get_criterion(name, model)``
picks the one that fits the model. A criterion registered with ``generic=True`` works on both.

    >>> from shrinknet.criteria import register_criterion
    >>> @register_criterion("my-criterion")
    ... def mine(model, X, T, loss):
    ...     return [torch.zeros(k) for k in model.hidden_sizes]
"""
from __future__ import annotations

from typing import Callable

import torch

from .._validation import ShrinkNetError

Criterion = Callable[..., list]
_REGISTRY: dict[str, Criterion] = {}
_GENERIC: dict[str, Criterion] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_criterion(name: str, fn: Criterion | None = None, *, description: str = "",
                       overwrite: bool = False, generic: bool = False):
    """Register ``fn`` under ``name`` (usable as a decorator). ``generic=True``: ``fn`` also works on
    models other than the MLP class (it only uses ``model.gates``, ``model(X)`` and the like)."""
    def deco(f):
        if name in _REGISTRY and not overwrite:
            raise ShrinkNetError(f"criterion {name!r} is already registered (pass overwrite=True to replace it)")
        if name in _REGISTRY:                      # replaced: its old generic version goes too
            _GENERIC.pop(name, None)
        _REGISTRY[name] = f
        if generic:
            _GENERIC[name] = f
        _DESCRIPTIONS[name] = description or (f.__doc__ or "").strip().split("\n")[0]
        return f
    return deco(fn) if fn is not None else deco


def register_generic(name: str):
    """Decorator: the implementation of criterion ``name`` for gated models other than the MLP class."""
    def deco(f):
        _GENERIC[name] = f
        return f
    return deco


def get_criterion(name_or_fn, model=None) -> Criterion:
    """The criterion function; with ``model``, the implementation that fits that model."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in _REGISTRY:
        raise ShrinkNetError(f"unknown criterion {name_or_fn!r}: expected one of {', '.join(available_criteria())}")
    from ..gating import GatedModel
    if isinstance(model, GatedModel):
        if name_or_fn not in _GENERIC:
            raise ShrinkNetError(f"criterion {name_or_fn!r} works on shrinknet.MLP only: expected one of "
                                 f"{', '.join(sorted(_GENERIC))} for other models")
        return _GENERIC[name_or_fn]
    return _REGISTRY[name_or_fn]


def available_criteria() -> list[str]:
    return sorted(_REGISTRY)


def describe_criteria() -> dict[str, str]:
    return {k: _DESCRIPTIONS[k] for k in available_criteria()}


def criterion_name(c) -> str:
    if isinstance(c, str):
        return c
    for k, v in _REGISTRY.items():
        if v is c:
            return k
    return getattr(c, "__name__", "custom")


def mark_removed(model, scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Set NaN where the gate is 0, so removed neurons are never ranked."""
    return [torch.where(g != 0, s, torch.full_like(s, float("nan"))) for g, s in zip(model.gates, scores)]


from . import approximate, brute_force, classic, generic, taylor  # noqa: E402,F401  (registers the built-ins)

__all__ = ["register_criterion", "register_generic", "get_criterion", "available_criteria", "describe_criteria", "mark_removed"]
