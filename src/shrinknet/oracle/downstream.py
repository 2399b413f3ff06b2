"""The exact oracle's passes from a gate on: upstream replayed, candidates looped or vmapped as measured.

For one chunk of data, the module calls that finish before the gate of the group fires are recorded
once (:mod:`.upstream`) and replayed for every candidate, so a candidate costs the part of the model
from its gate on. The candidates then run either

* ``loop``: one pass per candidate with its gate row, the plain pass's shapes (the literal
  definition's arithmetic from the gate on), or
* ``vmap``: ``c`` candidates at a time under ``torch.func.vmap`` over their gate rows, which pays
  where one candidate's pass is too small to keep the CPU busy (few rows, narrow layers) and costs
  where it is not (vmap's batched copies of the activations, the math attention kernel).

Which is faster depends on the model, the data and the machine, so the first call for a group
measures both on its first candidates (whose errors are kept, nothing is computed twice) and the
group keeps the faster for the rest of the run (:class:`Choice`). Either way each candidate's error
is its literal definition's to float rounding.
"""
from __future__ import annotations

import contextlib
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import inputs as batch
from .. import losses
from . import rows, upstream

#: vmap must beat the loop by this factor on the measured candidates to be chosen (the measurement
#: is short and the loop never loses to the literal definition, so ties go to the loop)
VMAP_MARGIN = 0.8

#: candidates the loop runs while the choice is measured (after one untimed warm-up pass)
LOOP_PROBE = 2


class Choice:
    """Per group, how the oracle runs its candidates: ("loop", 1) or ("vmap", chunk)."""

    def __init__(self, rows: bool = True):
        self.by_group: dict[int, tuple[str, int]] = {}
        self.rows = rows                                   # cut the last block to the rows the loss reads
        self.row_plans: dict = {}                          # (chunk, rows per chunk) -> RowPlan or None


VMAP_ERRORS = (RuntimeError, NotImplementedError, ValueError)


def errors(model, data, loss: str, layer: int, C: int, gate_rows, n_step: int, c_vmap: int, choice: Choice,
           vmap_ok: bool = True) -> torch.Tensor:
    """(C,) float64: E of each candidate's gate row ``gate_rows(slice)`` ((c, K) rows) on this rank's
    data, over chunks of ``n_step`` rows, ``c_vmap`` candidates per vmapped pass. Raises
    :class:`~shrinknet.oracle.upstream.ReplayMismatch` where the model cannot be replayed."""
    from torch.func import vmap
    out = torch.zeros(C, dtype=torch.float64, device=model.gates[layer].device)
    at, on_input = upstream.gate_module(model, layer)
    for i, (Xb, Tb) in enumerate(data.chunks(n_step)):
        rec = upstream.record(model, Xb)
        cut = _row_plan(model, Xb, Tb, loss, rec, (i, n_step), choice)
        if cut is not None:                               # recorded again with the rows cut, as it replays
            with cut.on():
                rec = upstream.record(model, Xb)
        plan = rec.plan(at, on_input)
        del rec
        with upstream.Recording.replaying(None, plan) as reset, cut.on() if cut else contextlib.nullcontext():

            def error(row, Xb=Xb, Tb=Tb):
                reset()
                with model.overriding({layer: row}):
                    z = model(Xb)
                return losses.per_row(z, Tb, model.output_activation, loss).double().sum()

            def loop(cs):
                return torch.stack([error(r) for r in gate_rows(cs)])

            def vmapped(cs):
                with sdpa_kernel(SDPBackend.MATH):
                    return vmap(error)(gate_rows(cs))
            j = 0
            how = choice.by_group.get(layer)
            if how is None:
                how, j = _measure(out, loop, vmapped, C, c_vmap, vmap_ok)
                choice.by_group[layer] = how
            step = how[1]
            run = vmapped if how[0] == "vmap" else loop
            for j in range(j, C, step):
                cs = slice(j, j + step)
                out[cs] += run(cs)
    return out


def _row_plan(model, Xb, Tb, loss, rec, key, choice: Choice):
    """The chunk's :class:`~shrinknet.oracle.rows.RowPlan` (made and checked once per run and chunk
    of data), or None."""
    if not getattr(choice, "rows", False):
        return None
    kept = choice.row_plans.get(key)
    if kept is not None and kept[1] is not None and not _same(kept[0], (Xb, Tb)):
        kept = None                  # other data in this chunk (the rows read may follow labels, padding)
    if kept is None:
        cut = rows.plan(model, Xb, Tb, loss, rec)
        kept = ((batch.clone(Xb), Tb.detach().clone()) if cut is not None else None, cut)
        choice.row_plans[key] = kept
    return kept[1]


def _same(a, b) -> bool:
    la, lb = batch.leaves(a[0]) + [a[1]], batch.leaves(b[0]) + [b[1]]
    return len(la) == len(lb) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(la, lb))


def _measure(out, loop, vmapped, C: int, c_vmap: int, vmap_ok: bool):
    """Run the first candidates both ways, timed, into ``out``: (the faster way, candidates done)."""
    if not vmap_ok or c_vmap <= 1 or C < 1 + LOOP_PROBE + 2:
        return ("loop", 1), 0
    out[0:1] += loop(slice(0, 1))                       # warm-up: first allocations
    t = time.perf_counter()
    out[1:1 + LOOP_PROBE] += loop(slice(1, 1 + LOOP_PROBE))
    per_loop = (time.perf_counter() - t) / LOOP_PROBE
    j = 1 + LOOP_PROBE
    c = min(c_vmap, C - j)
    t = time.perf_counter()
    out[j:j + c] += vmapped(slice(j, j + c))            # (where vmap cannot run the model, the caller warns)
    per_vmap = (time.perf_counter() - t) / c
    return (("vmap", c_vmap) if per_vmap < VMAP_MARGIN * per_loop else ("loop", 1)), j + c
