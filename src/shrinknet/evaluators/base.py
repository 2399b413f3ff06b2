"""What every evaluator does (see :mod:`shrinknet.evaluators`)."""
from __future__ import annotations

import contextlib

import torch

from ..oracle.cache import Cache


class Evaluator:
    """How one run evaluates its gated model. A new instance per run (per context): it keeps the
    run's state (stepper, fitted statistics) in its own typed fields.

    Methods taking ``ctx`` read the context's model, data (``ctx.data``), loss, compensation mode and
    kept pass, and pass the lower layers (:mod:`shrinknet.oracle`, :mod:`shrinknet.compensation`,
    :mod:`shrinknet.derivatives`) only what they need.
    """

    #: whether a DataLoader's batches are gathered into tensors (a kept pass needs the data in memory)
    gathers_loader = False
    #: whether, under :meth:`compensated`, the model's gates apply the run's compensation (so anything
    #: computed through the gates, e.g. a sampled curvature, sees the compensated removal)
    compensates_through_gates = False

    def fork(self) -> "Evaluator":
        """A fresh evaluator of the same kind (for a copy of the model: nothing carried over)."""
        return type(self)()

    # ---- inputs ------------------------------------------------------------------------------
    def check_x(self, model, X, dtype, device, name: str = "X"):
        raise NotImplementedError

    def check_memory(self, model, X) -> None:
        """Refuse, up front, data whose kept pass cannot fit (nothing by default)."""

    # ---- the kept pass -------------------------------------------------------------------------
    def build(self, model, X) -> Cache:
        """The model's forward pass on X with its current weights and gates."""
        return Cache(X, z=model.outputs(X))

    def update(self, model, cache: Cache, layer: int, unit: int) -> bool:
        """Bring ``cache`` up to date after gate (layer, unit) changed; False where it must be rebuilt."""
        return False

    def outputs(self, model, X, gates=None) -> torch.Tensor:
        """The output on X without autograd, ``gates`` (one (K,) tensor or None per group) replacing
        the model's own for this pass."""
        return model.outputs(X, gates)

    # ---- the exact oracle (summed over every rank) ------------------------------------------
    def errors_without(self, ctx, layer: int, units) -> torch.Tensor:
        raise NotImplementedError

    def errors_with_gains(self, ctx, layer: int, units, gains) -> torch.Tensor:
        raise NotImplementedError

    def removal_derivatives(self, ctx, layer: int, units):
        raise NotImplementedError

    def best(self, ctx):
        """(layer, unit, change in E) of the exact brute-force choice of the next step, where this
        kind has a faster route to it than scoring every unit; None otherwise. In a cost-aware prune
        (``ctx.costs`` not None) the choice is the cost-aware rule's (:func:`shrinknet.criteria.ranked`)."""
        return None

    # ---- derivatives and statistics -------------------------------------------------------------
    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """Per group: sum_n u dE/do and (with ``second``) an estimate of sum_n u^2 d2E/do^2, u the
        change a removal makes to the unit's output (its output, or with compensation (where
        ``compensated``) its residual); None per group without ``second``."""
        raise NotImplementedError

    def unit_outputs(self, ctx):
        """Yield (group, un-gated output of its units) over all of the context's data."""
        raise NotImplementedError

    def second_order_passes(self, ctx) -> int | None:
        """Backward passes per batch that :meth:`unit_derivatives` with ``second`` takes, where it takes
        any (None: a closed form)."""
        return None

    # ---- compensation -------------------------------------------------------------------------
    def check_compensation(self, mode: str, model) -> str:
        raise NotImplementedError

    def compensated(self, ctx):
        """A context manager under which the model's gates apply the run's compensation (nothing by
        default: a kind whose oracle scores the compensated removal by itself)."""
        return contextlib.nullcontext()

    def remove(self, ctx, layer: int, unit: int):
        """Switch (layer, unit) off with the context's compensation; returns a function that undoes it."""
        raise NotImplementedError
