"""The exact oracle's floor: the FLOPs it cannot avoid, against the plain loop's.

The literal definition pays one full forward pass per candidate. The oracle
(:func:`shrinknet.oracle.errors_without` on a :class:`~shrinknet.GatedModel`) pays, per candidate of
group l, the pass from the gate of l on (:mod:`.upstream`), with the last block cut to the rows the
loss reads where :mod:`.rows` accepts it. :func:`flops_floor` counts both with
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions, attention; 2 per
multiply-add; elementwise work is not counted) on the very passes the oracle runs, on one chunk of
the context's data; :meth:`Floor.speedup` is then the speed-up over the plain loop that FLOPs allow,
the figure a measured speed-up is held against (``benchmarks/oracle_generic.py`` prints both). It
counts the passes the oracle runs where it can: a model that cannot be replayed (the oracle then
falls back to vmapped or replicated passes) raises
:class:`~shrinknet.oracle.upstream.ReplayMismatch` here.

    >>> f = flops_floor(ctx)
    >>> f.speedup(ctx.model.hidden_sizes)       # e.g. 3.6 on a 4-block ViT read at its CLS token
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .._validation import ShrinkNetError
from ..gating import GatedModel
from . import rows, upstream


@dataclass(frozen=True)
class Floor:
    """FLOPs of one full pass (``full``), and per group of one candidate's pass as the oracle runs it
    (``per_group``) and as it would without the row cut (``without_row_cut``); ``rows_cut``: whether
    the row cut applies to this model and data."""
    full: int
    per_group: list[int]
    without_row_cut: list[int]
    rows_cut: bool

    def speedup(self, candidates, row_cut: bool = True) -> float:
        """sum_l C_l * full / sum_l C_l * oracle_l for ``candidates`` = C_l per group: the literal
        loop's FLOPs over the oracle's."""
        per = self.per_group if row_cut else self.without_row_cut
        if len(candidates) != len(per):
            raise ValueError(f"candidates: expected a count per group ({len(per)}), got {len(candidates)}")
        return sum(c * self.full for c in candidates) / max(1, sum(c * f for c, f in zip(candidates, per)))


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


@torch.no_grad()
def flops_floor(ctx, rows_per_pass: int | None = None) -> Floor:
    """The :class:`Floor` of the context's model (a :class:`~shrinknet.GatedModel`) on the first
    ``rows_per_pass`` samples of its data (default: all of it in one pass), the candidate of each group
    being its first unit switched off."""
    gm = ctx.model
    if not isinstance(gm, GatedModel):
        raise ShrinkNetError(f"ctx: expected a context of a GatedModel (the MLP's oracle works by rank-1 updates, "
                             f"not passes from the gate on), got one of {type(gm).__name__}")
    Xb, Tb = next(iter(ctx.data.chunks(rows_per_pass or 10 ** 12)))
    full = _flops(lambda: gm(Xb))
    rec = upstream.record(gm, Xb)
    cut = rows.plan(gm, Xb, Tb, ctx.loss, rec)
    cut_rec = None
    if cut is not None:
        with cut.on():
            cut_rec = upstream.record(gm, Xb)
    per, plain = [], []
    for l in range(gm.n_hidden_layers):
        at, on_input = upstream.gate_module(gm, l)
        row = gm.gates[l].clone()
        row[0] = 0
        for out, r, plan in ((plain, rec, None), (per, cut_rec or rec, cut)):
            with (r.replaying(r.plan(at, on_input)) as reset, gm.overriding({l: row}),
                  plan.on() if plan is not None else contextlib.nullcontext()):
                out.append(_flops(lambda: (reset(), gm(Xb))))
    return Floor(full, per, plain, cut is not None)


__all__ = ["Floor", "flops_floor"]
