"""What removing a unit saves: parameters and FLOPs per sample, counted on the model ``shrink`` makes.

For every unit group of a gated model, :func:`unit_costs` removes one active unit physically (the
same :func:`shrinknet.shrink` a run ends with, so every unit kind is counted by its own cut: a Linear
row and its consumers' columns, a Conv2d filter with its BatchNorm channel, an FFN neuron's rows and
column, an attention head's q/k/v rows and output columns) and counts what went: parameters
(:func:`shrinknet.stats.n_params`) and FLOPs of one forward pass on one sample at the traced input
shape (:func:`shrinknet.stats.flops`, 2 per multiply-add). Units of one group cost the same, so one
cut per group is enough (a whole sublayer, ``units=["blocks"]``, is a group of one: its branch's
parameters and projections); costs are of the model as it is (its current gates), since a unit's cost
depends on how many of its inputs and consumers are still there. Each group's count is its unit kind's
(:meth:`shrinknet.units.UnitKind.cost`; an MLP's neurons count as Linear features).

    >>> costs = unit_costs(gated)              # [UnitCost(params=..., flops=...) per group]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._validation import ShrinkNetError
from .gating import Gated, GatedModel
from .stats import flops, n_params
from .surgery import shrink
from .units import KINDS, kind_of


@dataclass(frozen=True)
class UnitCost:
    """Parameters and FLOPs per sample that removing one unit of a group saves (0, 0 where the group
    has no active unit left)."""
    params: int
    flops: int


def _measure(model: Gated, keep: dict, x) -> tuple[int, int]:
    small = shrink(model, keep, check=False)
    return n_params(small), flops(small, x)


@torch.no_grad()
def unit_costs(model: Gated, example_input=None) -> list[UnitCost]:
    """Per unit group of ``model`` (an :class:`shrinknet.MLP` or a :class:`~shrinknet.GatedModel`, as it
    is: its current gates), what removing one more active unit saves; see the module's docstring.
    ``example_input``: the input shape the FLOPs are counted at (default: the model's own example,
    or for an MLP one sample of zeros)."""
    if not isinstance(model, Gated):
        raise ShrinkNetError(f"model: expected shrinknet.MLP or shrinknet.GatedModel, got {type(model).__name__}")
    if example_input is None:
        if isinstance(model, GatedModel):
            example_input = model.example
        else:
            example_input = torch.zeros(1, *model.input_shape, dtype=model.gates[0].dtype)
    active = {n: np.flatnonzero(g.detach().cpu().numpy() != 0) for n, g in zip(model.unit_names, model.gates)}
    keep = dict(active)
    try:
        base = _measure(model, keep, example_input)
    except ShrinkNetError:
        # a layer cannot be cut to nothing where that disconnects the net (a Linear / Conv2d, the MLP's
        # layers): such a group is measured with one unit (its lowest) back
        keep = {n: u if u.size else np.arange(1) for n, u in active.items()}
        base = _measure(model, keep, example_input)
    kinds = [kind_of(u) for u in model.units] if isinstance(model, GatedModel) else [KINDS["linear"]] * len(keep)
    out = []
    for l, name in enumerate(keep):
        if active[name].size == 0:
            out.append(UnitCost(0, 0))
            continue
        out.append(UnitCost(*kinds[l].cost(lambda k: _measure(model, k, example_input), keep, name,
                                           model.hidden_sizes[l], base)))
    return out


__all__ = ["UnitCost", "unit_costs"]
