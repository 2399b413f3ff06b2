"""Budgets in parameters and FLOPs, and the cost-aware choice: what a prune keeps, counted as the
shrunk model will have it.

:class:`Kept` follows, removal by removal, the parameters and the FLOPs per sample (at the
calibration inputs' shape) of the model :func:`shrinknet.shrink` would make from the gated model,
and what removing one more unit of each group saves (:func:`shrinknet.unit_costs`). A prune with
``Stop(params=...)`` / ``Stop(flops=...)`` stops at the first removal that brings the kept fraction
of the whole model's count to the budget; one with ``cost="params"`` / ``"flops"`` ranks the units by
their score divided by that saving (:func:`shrinknet.criteria.ranked`).

Why a count and not a ``shrink`` per step: a unit's saving depends on the units still there (an MLP
neuron's outgoing weights go with the next layer's neurons), but every such count is a polynomial of
degree two in the active counts (a weight's size is the product of its input and output widths, a
product's FLOPs of its two sides). So the saving of one more unit of group ``l`` after one unit of
group ``m`` went changes by a constant ``Q[l, m]``: measured once at the start with
:func:`~shrinknet.unit_costs` (only for the groups whose saving depends on others at all: none for
FFN neurons and heads, whose residual width is fixed), it gives every later count exactly, in a few
additions per step. The tests hold it equal to ``sum(p.numel())`` and the FLOP counter of the shrunk
model.

Where shrink keeps something of an emptied group (attention code needs a head, GPT-2's Conv1D a neuron:
it keeps one, silent),
the last unit of that group saves that much less; this is measured once too, by emptying each group.
A group that cannot be cut to nothing (an MLP layer, a Linear / Conv2d whose removal would disconnect
the net) is counted past that point by the same polynomial: as a layer of width 0 (its weights gone,
the next layer's bias kept).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ._validation import ShrinkNetError
from .costs import unit_costs
from .gating import Gated, GatedModel
from .stats import flops, n_params
from .surgery import shrink

#: what a cost-aware prune divides the scores by: a unit's saving in parameters, or in FLOPs per sample
COSTS = ("params", "flops")
_COLUMN = {"params": 0, "flops": 1}


def check_cost(cost) -> str | None:
    """``cost`` checked: None (rank by score alone), "params" or "flops"."""
    if cost is None or (isinstance(cost, str) and cost in COSTS):
        return cost
    raise ShrinkNetError(f"cost: expected None, 'params' or 'flops' (rank by score per parameter / FLOP saved), "
                         f"got {cost!r}")


#: what shrink, or the forward pass that counts the FLOPs, raises for a group it cannot leave empty (shrink
#: refuses a Linear / Conv2d that would disconnect the net)
_CANNOT_EMPTY = (ShrinkNetError, RuntimeError)


def _count(model: Gated, keep: dict, x) -> np.ndarray:
    """(parameters, FLOPs per sample) of the model shrink makes with ``keep``."""
    small = shrink(model, keep, check=False)
    return np.array([n_params(small), flops(small, x)], dtype=np.int64)


@contextlib.contextmanager
def _gates(model: Gated, on: dict):
    """The model with gate (l, u) set to on[(l, u)] (0 or 1) for the block, restored after."""
    saved = [g.detach().clone() for g in model.gates]
    try:
        for (l, u), v in on.items():
            model.set_gate(l, u, float(v))
        yield model
    finally:
        model.set_gates(saved)


def _costs(model: Gated, x) -> np.ndarray:
    """unit_costs as a (groups, 2) integer array: parameters and FLOPs saved by one more removal."""
    return np.array([[c.params, c.flops] for c in unit_costs(model, x)], dtype=np.int64).reshape(-1, 2)


class Kept:
    """Parameters and FLOPs per sample of the model that :func:`shrinknet.shrink` makes from ``model``
    (an :class:`shrinknet.MLP` or :class:`~shrinknet.GatedModel`, as it is now), and what removing one
    more unit of each group saves, followed removal by removal (see the module's docstring).

    Attributes
    ----------
    total : (2,) int array
        The whole model's parameters and FLOPs (every unit kept, the gates as they are ignored).
    kept : (2,) int array
        Those of the model shrink makes with the units active now.
    saving : (groups, 2) int array
        What removing one more active unit of each group saves now (0 where none is left), but for a
        group's last unit: :meth:`costs` has that too.
    """

    def __init__(self, model: Gated, example_input=None):
        if not isinstance(model, Gated):
            raise ShrinkNetError(f"model: expected shrinknet.MLP or shrinknet.GatedModel, got {type(model).__name__}")
        if example_input is None:
            example_input = model.example if isinstance(model, GatedModel) else \
                torch.zeros(1, *model.input_shape, dtype=model.gates[0].dtype, device=model.gates[0].device)
        x, names = example_input, model.unit_names
        with torch.no_grad():
            self.total = _count(model, {n: np.arange(k) for n, k in zip(names, model.hidden_sizes)}, x)
            active = [np.flatnonzero(g.detach().cpu().numpy() != 0) for g in model.gates]
            # where shrink cannot leave a group empty, start from one unit of it back and remove it below
            back = {}
            try:
                kept = _count(model, dict(zip(names, active)), x)
            except _CANNOT_EMPTY:
                back = {(l, 0): 1 for l, a in enumerate(active) if a.size == 0}
                kept = _count(model, {n: a if a.size else np.arange(1) for n, a in zip(names, active)}, x)
            with _gates(model, back):
                self.counts = np.array([int((g != 0).sum()) for g in model.gates], dtype=np.int64)
                self.saving = _costs(model, x)
                self.q = self._interactions(model, x)
                self.last = self._last_units(model, x, kept)
        self.kept = kept
        for l, _ in back:
            self.remove(l)

    def _interactions(self, model: Gated, x) -> np.ndarray:
        """Q[l, m] (per count): how much less removing a unit of group l saves after one unit of group m
        went. Every such change is >= 0 (sizes are products of widths), so one measurement with one
        unit of every group gone finds the groups whose saving depends on none: they need no more."""
        G = len(self.counts)
        q = np.zeros((G, G, 2), dtype=np.int64)
        gates = [g.detach().cpu().numpy() for g in model.gates]
        active = [np.flatnonzero(g != 0) for g in gates]
        # one unit off in every group that keeps two or more (unit_costs measures each group by one more cut)
        many = [l for l in range(G) if active[l].size >= 2]
        need = list(range(G))
        if many:
            with _gates(model, {(l, int(active[l][-1])): 0 for l in many}):
                rows = self.saving - _costs(model, x)          # row l: sum of Q[l, m] over m in `many`
            if (rows >= 0).all():           # (else not a polynomial of that kind: measure every group)
                need = [l for l in range(G) if l not in many or rows[l].any()]
        measured = []
        for m in need:
            if active[m].size >= 2:                 # one unit of m off
                with _gates(model, {(m, int(active[m][-1])): 0}):
                    q[:, m] = self.saving - _costs(model, x)
            elif active[m].size == 1 and active[m].size < gates[m].size:   # one more unit of m on
                with _gates(model, {(m, int(np.flatnonzero(gates[m] == 0)[0])): 1}):
                    q[:, m] = _costs(model, x) - self.saving
            elif active[m].size == 1:               # a group of one unit: off, where shrink can leave it empty
                try:
                    with _gates(model, {(m, int(active[m][0])): 0}):
                        q[:, m] = self.saving - _costs(model, x)
                except _CANNOT_EMPTY:
                    continue
            else:
                continue
            measured.append(m)
        # Q is symmetric (the second difference of one count): a group not measured has, against every
        # other group not measured, no interaction (both in `many`, rows of 0), and against a measured one
        # the entry of that one's column
        for m in range(G):
            if m not in measured:
                q[:, m] = q[m, :]
        return q

    def _last_units(self, model: Gated, x, kept: np.ndarray) -> np.ndarray:
        """Per group, how much less its last unit saves than the polynomial says: where the shrunk model
        keeps something of an emptied group (attention code needs one head: shrink keeps a silent one),
        measured once by emptying each group; 0 where shrink cannot empty it (counted as width 0)."""
        G = len(self.counts)
        last = np.zeros((G, 2), dtype=np.int64)
        active = [np.flatnonzero(g.detach().cpu().numpy() != 0) for g in model.gates]
        for l, n in enumerate(self.counts):
            if not n:
                continue
            keep = dict(zip(model.unit_names, active))
            try:
                empty = _count(model, {**keep, model.unit_names[l]: active[l][:0]}, x)
            except _CANNOT_EMPTY:
                continue
            said = kept - n * self.saving[l] + self.q[l, l] * (n * (n - 1) // 2)
            last[l] = empty - said
        return last

    def remove(self, layer: int, n: int = 1) -> None:
        """Count ``n`` more units of group ``layer`` removed."""
        n = int(n)
        self.kept = self.kept - n * self.saving[layer] + self.q[layer, layer] * (n * (n - 1) // 2)
        self.saving = self.saving - n * self.q[:, layer]
        self.counts[layer] -= n
        if n and self.counts[layer] == 0:
            self.kept = self.kept + self.last[layer]
        self.saving[self.counts == 0] = 0

    def fraction(self) -> tuple[float, float]:
        """(parameters, FLOPs) kept, as fractions of the whole model's."""
        return tuple(float(k) / float(t) if t else 1.0 for k, t in zip(self.kept, self.total))

    def lowest(self) -> tuple[float, float]:
        """:meth:`fraction` after removing every unit active now: the lowest budgets a prune can reach."""
        low = Kept.__new__(Kept)
        low.total, low.kept, low.saving, low.q, low.last, low.counts = self.total, self.kept, self.saving, self.q, \
            self.last, self.counts.copy()
        for l, k in enumerate(self.counts):
            if k:
                low.remove(l, k)
        return low.fraction()

    def costs(self, kind: str) -> list[float]:
        """Per group, what removing one more unit saves in ``kind`` ("params" or "flops")."""
        saving = self.saving - np.where(self.counts[:, None] == 1, self.last, 0)
        return [float(v) for v in saving[:, _COLUMN[kind]]]

    def reached(self, stop) -> str:
        """Why ``stop``'s budgets are met now ('' where neither is): the reason a prune stops with."""
        p, f = self.fraction()
        if stop.params is not None and p <= stop.params + 1e-12:
            return f"parameter budget reached ({p:.1%} kept)"
        if stop.flops is not None and f <= stop.flops + 1e-12:
            return f"FLOPs budget reached ({f:.1%} kept)"
        return ""

    def check_reachable(self, stop) -> None:
        """Refuse, before any work, a budget that removing every unit the run may remove cannot reach."""
        low = self.lowest()
        for k, (name, what) in enumerate((("params", "parameters"), ("flops", "FLOPs per sample"))):
            want = getattr(stop, name)
            if want is not None and low[k] > want + 1e-12:
                raise ShrinkNetError(f"stop.{name}: removing every unit this run may remove keeps {low[k]:.4f} of "
                                     f"the model's {what} (the lowest reachable); expected a budget of at least "
                                     f"{low[k]:.4f}, got {want!r}")


__all__ = ["COSTS", "Kept", "check_cost"]
