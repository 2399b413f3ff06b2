"""Unit kinds as plug-ins: one module per kind of prunable unit, each saying how its units are found,
gated, cut, saved and what they cost (:class:`~shrinknet.units.base.UnitKind`).

* :mod:`~shrinknet.units.linear`: the output features of an ``nn.Linear`` / Hugging Face ``Conv1D``;
* :mod:`~shrinknet.units.conv`: the output channels of an ``nn.Conv2d``;
* :mod:`~shrinknet.units.ffn`: a transformer's FFN neurons, plain and gated (LLaMA-style) MLPs;
* :mod:`~shrinknet.units.heads`: attention heads, in the styles of :data:`shrinknet.blocks.ATTENTION_STYLES`;
* :mod:`~shrinknet.units.sublayer`: whole transformer sublayers (``units=["blocks"]``).

(:mod:`~shrinknet.units.site` holds what FFN neurons and heads share: a block of one consumer's input
columns per unit.) :data:`KINDS` is the registry that :mod:`shrinknet.finding`, :mod:`shrinknet.gating`,
:func:`shrinknet.shrink`, :mod:`shrinknet.saving` and :func:`shrinknet.unit_costs` read, keyed by
``Unit.kind``; a name in ``units`` is resolved by the first kind, in its order, that claims it. A new kind
is one module with a :class:`UnitKind` subclass, registered with :func:`register_unit_kind`.
"""
from .base import KINDS, Trace, Unit, UnitKind, kind_of, register_unit_kind
from .conv import CONV2D
from .ffn import FFN, GATED_FFN
from .heads import HEADS
from .linear import LINEAR
from .sublayer import SUBLAYER

# most specific first: a sublayer's name, an attention or gated-MLP module, an FFN's first projection,
# then any other Conv2d / Linear
for _kind in (SUBLAYER, HEADS, GATED_FFN, FFN, CONV2D, LINEAR):
    register_unit_kind(_kind)

__all__ = ["KINDS", "Trace", "Unit", "UnitKind", "kind_of", "register_unit_kind"]
