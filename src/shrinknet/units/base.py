"""What a unit kind is: the interface each kind of unit implements, and the registry the generic machinery reads.

A *unit kind* says, for one kind of prunable unit (a Linear's output features, a Conv2d's channels,
FFN neurons, attention heads, whole sublayers, ...), how its groups are

* **found**: which ``units`` selectors it answers (``"heads"``), which names it claims by their form
  (``"...:sublayer"``), and the :class:`Unit` record of a name, read from one :class:`Trace` of the model;
* **gated**: whether the gate multiplies the input of the module ``gate_at`` (a block of its columns per
  unit: a forward pre-hook) or its output (a forward hook), and how (:meth:`UnitKind.gate`), what the
  statistics read as a unit's output (:meth:`UnitKind.observe`), and its weights in and out;
* **cut**: how a group loses the units not kept (:meth:`UnitKind.cut`);
* **saved**: the shapes a cut changes, recorded in a model file and given back to a template on load,
  and any metadata of its own;
* **costed**: what removing one unit saves (:meth:`UnitKind.cost`: parameters and FLOPs per sample).

The generic machinery (:mod:`shrinknet.finding`'s trace, :mod:`shrinknet.gating`'s hooks,
:func:`shrinknet.shrink`, :func:`shrinknet.save_model` / :func:`~shrinknet.load_model`,
:func:`shrinknet.unit_costs`) asks the kind of each unit (:data:`KINDS`, keyed by ``Unit.kind``) and
never which kind it holds. A new kind is a subclass of :class:`UnitKind` in one module, registered with
:func:`register_unit_kind`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._validation import ShrinkNetError


@dataclass
class Unit:
    """One group of prunable units: the output features / channels of one module, or a transformer
    structure (FFN neurons, attention heads) described by ``site``, or one whole transformer sublayer
    (one unit) described by ``branch``. ``kind`` names its :class:`UnitKind` in :data:`KINDS`."""
    name: str            # the producing module, or the attention / gated-MLP module (its name in named_modules());
                         # a sublayer: its module's name + ":sublayer"
    kind: str            # "linear", "conv2d", a site's kind ("ffn", "gated-ffn", "heads"), "sublayer", or a
                         # registered kind's name
    size: int            # number of units
    gate_at: str         # the module whose output (or, for a site, whose input) the gate multiplies
    chain: tuple         # producer, then the BatchNorm / activation modules that belong to it
    site: object = None      # a transformer structure's blocks.Site
    branch: object = None    # a whole transformer sublayer's Branch (kind "sublayer", one unit)

    @property
    def on_input(self) -> bool:
        """Whether the gate multiplies ``gate_at``'s input (a block of columns per unit) rather than its output."""
        return kind_of(self).on_input

    @property
    def block(self) -> int:
        """Values per unit in what the gate multiplies (1 for a feature or channel)."""
        return kind_of(self).block(self)

    @property
    def channel_dim(self) -> int:
        """The dimension of the gated tensor that indexes the units."""
        return kind_of(self).channel_dim(self)


@dataclass
class Trace:
    """One traced forward pass of a model, as the kinds find their groups in it."""
    model: nn.Module
    calls: list          # (name, module, input, output) of every leaf module call, in execution order
    out: object          # the model's output (logits)
    heads: list          # attention sites (blocks.find_sites), in module order
    gated: list          # gated-MLP sites
    unknown: list        # attention-looking modules of no known style
    mods: dict = field(default_factory=dict)       # {name: module}
    counts: dict = field(default_factory=dict)     # {name: calls in the pass}
    memo: dict = field(default_factory=dict)       # what the kinds derive from the trace, made once

    def __post_init__(self):
        if not self.mods:
            self.mods = dict(self.model.named_modules())
        if not self.counts:
            for name, *_ in self.calls:
                self.counts[name] = self.counts.get(name, 0) + 1

    @property
    def transformer(self) -> bool:
        """Whether the model has a supported attention module or gated MLP."""
        return bool(self.heads or self.gated)

    def cached(self, key: str, make):
        """``make()``, computed once per trace under ``key``."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def call(self, name: str):
        """The first call record (name, module, input, output) of module ``name``, or None."""
        return next((c for c in self.calls if c[0] == name), None)


class UnitKind:
    """One kind of unit: how its groups are found, gated, cut, saved and costed (the defaults: units
    that are output features of a module, gated on its output along the last dimension, nothing of
    their own to save, costed by measuring the kind's own cut)."""

    #: the kind's name: ``Unit.kind`` of its groups, its key in :data:`KINDS`
    name: str = ""
    #: what errors call a group's module
    noun: str = "module"
    #: the ``units`` strings that select groups of this kind (e.g. "heads")
    selectors: tuple = ()
    #: the gate multiplies ``gate_at``'s input (a forward pre-hook) rather than its output (a forward hook)
    on_input: bool = False
    #: ``shrink`` may remove every unit of a group (the model still runs)
    may_empty: bool = False
    #: its cut reads Torch-Pruning's dependency graph of the model (built once per ``shrink``)
    needs_graph: bool = False

    # ---- found ------------------------------------------------------------------------------------
    def claims(self, name: str) -> bool:
        """Whether ``name`` (a string in ``units``) is of this kind's own form (then :meth:`check_name`)."""
        return False

    def check_name(self, name: str, trace: Trace) -> str:
        """The group ``name`` (of this kind's form), checked against the trace."""
        raise NotImplementedError

    def select(self, selector: str, trace: Trace) -> list[str]:
        """The names of the groups ``selector`` (one of :attr:`selectors`) picks, in module order."""
        return []

    def unit(self, name: str, trace: Trace) -> Unit | None:
        """The :class:`Unit` record of group ``name``, or None where ``name`` is no group of this kind."""
        return None

    def check_together(self, units: list[Unit]) -> None:
        """Raise where this kind's groups cannot be pruned in one run with the others in ``units``."""

    def first_module(self, unit: Unit) -> str:
        """The module whose first call places the group in execution order."""
        return unit.name

    def prepare(self, model: nn.Module) -> None:
        """Make a working copy of a model ready for this kind's units (in place)."""

    # ---- gated ------------------------------------------------------------------------------------
    def block(self, unit: Unit) -> int:
        return 1

    def channel_dim(self, unit: Unit) -> int:
        return -1

    def fill_size(self, unit: Unit) -> int:
        """Width of what a removed group returns in its place (0: nothing, the gate scales it away)."""
        return 0

    def gate(self, unit: Unit, t: torch.Tensor, g: torch.Tensor, residual=None, fill=None) -> torch.Tensor:
        """``t`` (``gate_at``'s output, or input where :attr:`on_input`) under gate ``g`` ((K,) or
        per-sample rows (B, K)); ``residual``: the group's compensation map where one is on, ``fill``:
        its fill buffer (:meth:`fill_size`)."""
        dim = self.channel_dim(unit)
        # gate (K,) or per-sample (B, K), broadcast along the unit's channel dimension
        ones = [1] * (t.ndim - 2)
        if dim == 1:                  # out (B, K, H, W): (K, 1, 1) or (B, K, 1, 1)
            g = g.reshape(*g.shape, *ones)
        elif g.ndim == 2:             # out (B, ..., K): (B, 1.., K)
            g = g.reshape(g.shape[0], *ones, g.shape[1])
        return t * g

    def observe(self, unit: Unit, t: torch.Tensor) -> torch.Tensor:
        """The un-gated output of the group's units, from what the gate multiplies."""
        return t

    def plan(self, unit: Unit) -> list | None:
        """Per unit: {consumer module: its input indices fed by the unit}; None: read the dependency graph."""
        return None

    def fan_in(self, unit: Unit, mods: dict) -> torch.Tensor | None:
        """(K, M) incoming weights per unit; None: the producer's rows, read through the dependency graph."""
        return None

    def fan_out(self, unit: Unit, mods: dict) -> torch.Tensor | None:
        """(K, M) outgoing weights per unit; None: its consumers' columns, read through the dependency graph."""
        return None

    # ---- cut --------------------------------------------------------------------------------------
    def cut(self, model: nn.Module, unit: Unit, kept: list[int], *, graph=None, example_input=None,
            fill=None) -> None:
        """Remove the units of group ``unit`` not in ``kept`` from ``model`` in place (``graph``: the
        dependency graph where :attr:`needs_graph`; ``fill``: what a removed group returns)."""
        raise NotImplementedError

    # ---- saved ------------------------------------------------------------------------------------
    def shapes(self, model: nn.Module) -> dict:
        """{module name: its shape attributes} of the modules of ``model`` a cut of this kind resizes."""
        return {}

    def resizer(self, model: nn.Module, path):
        """A function (name, module, attrs) -> bool that gives a template's module the stored shape
        ``attrs`` where the module is this kind's (True) (None: this kind resizes nothing)."""
        return None

    def save_meta(self, model: nn.Module) -> dict:
        """{metadata key: a JSON-able value} this kind records in a model file (only where it has some)."""
        return {}

    def load_meta(self, model: nn.Module, meta: dict, where: str) -> None:
        """Rebuild in ``model`` (a template, in place) what :meth:`save_meta` recorded in ``meta``."""

    # ---- costed -----------------------------------------------------------------------------------
    def cost(self, measure, keep: dict, name: str, size: int, base: tuple) -> tuple[int, int]:
        """(parameters, FLOPs per sample) that removing one more active unit of group ``name`` saves.

        ``measure(keep)`` gives (parameters, FLOPs) of the model shrunk to ``keep`` ({group: kept
        indices}, ``keep[name]`` the group's active units, at least one), ``base`` is ``measure(keep)``,
        ``size`` the group's size. By default one unit is removed by the kind's own cut and what went is
        counted; the last unit of a group that cannot go alone costs what one more would add."""
        units = keep[name]
        try:
            params, fl = measure({**keep, name: units[1:]})
            return base[0] - params, base[1] - fl
        except ShrinkNetError:
            if units.size != 1:
                raise
        others = np.setdiff1d(np.arange(size), units)
        more = measure({**keep, name: np.sort(np.append(units, others[:1]))})
        return more[0] - base[0], more[1] - base[1]


#: the unit kinds by name, in the order a name is resolved (the first kind whose ``unit`` answers wins)
KINDS: dict[str, UnitKind] = {}


def register_unit_kind(kind: UnitKind, *, before: str | None = None) -> UnitKind:
    """Add ``kind`` (a :class:`UnitKind`) to :data:`KINDS`, last or just before kind ``before``
    (a kind that claims names an earlier one would, e.g. some Linear layers, goes before it); a kind
    of a name already there replaces it in place."""
    if not isinstance(kind, UnitKind):
        raise ShrinkNetError(f"kind: expected a shrinknet.units.UnitKind, got {type(kind).__name__}")
    if not isinstance(kind.name, str) or not kind.name:
        raise ShrinkNetError(f"kind: expected a non-empty name, got {kind.name!r}")
    if before is None or kind.name in KINDS:
        KINDS[kind.name] = kind
        return kind
    if before not in KINDS:
        raise ShrinkNetError(f"before: expected a registered unit kind ({', '.join(KINDS)}), got {before!r}")
    items = list(KINDS.items())
    k = [n for n, _ in items].index(before)
    KINDS.clear()
    KINDS.update([*items[:k], (kind.name, kind), *items[k:]])
    return kind


def kind_of(unit: Unit) -> UnitKind:
    """The :class:`UnitKind` of ``unit``."""
    kind = KINDS.get(unit.kind)
    if kind is None:
        raise ShrinkNetError(f"units: {unit.name!r} is of kind {unit.kind!r}, which is not registered; expected one "
                             f"of {', '.join(KINDS)}")
    return kind


__all__ = ["KINDS", "Trace", "Unit", "UnitKind", "kind_of", "register_unit_kind"]
