"""What FFN neurons and attention heads share as units: each owns a block of one linear consumer's input.

A transformer structure sits between *producers* and one linear *consumer* (a :class:`shrinknet.blocks.Site`):
unit j owns rows of its producers and the block of ``site.block`` consecutive input columns
``site.columns(j)`` of the consumer. So its gate multiplies that block of the consumer's input (a forward
pre-hook; under compensation a gate moves the columns by their residual instead), what the statistics read
as its output is that block, and a cut takes the producers' rows and the consumer's columns
(:func:`shrinknet.blocks.cut`). A group may lose all its units: the block still passes its input on
through the residual connection.
"""
from __future__ import annotations

import torch

from .. import blocks
from .base import Trace, Unit, UnitKind


class SiteKind(UnitKind):
    """Units that own a block of one linear consumer's input columns (see the module's docstring)."""
    on_input = True
    may_empty = True

    def site(self, name: str, trace: Trace):
        """The :class:`~shrinknet.blocks.Site` of group ``name``, or None where it is none of this kind."""
        return None

    def unit(self, name: str, trace: Trace) -> Unit | None:
        s = self.site(name, trace)
        return None if s is None else Unit(name, s.kind, s.size, s.consumer, (name,), s)

    def first_module(self, unit: Unit) -> str:
        return unit.site.producers[0].name

    def block(self, unit: Unit) -> int:
        return unit.site.block

    def channel_dim(self, unit: Unit) -> int:
        return -2            # unit outputs are read as (..., K, block)

    def gate(self, unit, x, g, residual=None, fill=None):
        block = unit.site.block
        # each unit owns `block` consecutive input columns (a head: head_dim of them per query head)
        if block > 1:
            g = g.repeat_interleave(block, dim=-1)
        if g.ndim == 2:               # per-sample rows: (B, 1.., D)
            g = g.reshape(g.shape[0], *([1] * (x.ndim - 2)), g.shape[1])
        if residual is None:
            return x * g
        mean, M = residual            # compensated: a gate moves the columns by their residual r
        r = x - mean if M is None else x @ M[:-1] + M[-1]
        return x - (1 - g) * r

    def observe(self, unit, x):
        return x.unflatten(-1, (unit.size, unit.block))

    def plan(self, unit):
        s = unit.site
        return [{s.consumer: list(range(s.columns(j).start, s.columns(j).stop))} for j in range(unit.size)]

    def fan_in(self, unit, mods) -> torch.Tensor:
        return blocks.fan_in(unit.site, mods)

    def fan_out(self, unit, mods) -> torch.Tensor:
        return blocks.fan_out(unit.site, mods)

    def cut(self, model, unit, kept, *, graph=None, example_input=None, fill=None) -> None:
        self.after_cut(model, unit.site, blocks.cut(model, unit.site, kept))

    def after_cut(self, model, site, kept: int) -> None:
        """What the modules around the site keep of its size, updated for ``kept`` units (in place)."""


__all__ = ["SiteKind"]
