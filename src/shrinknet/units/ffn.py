"""A transformer's FFN neurons as units: plain FFN pairs and gated (LLaMA-style) MLPs.

* **found**: a gated MLP is a module with ``gate_proj`` / ``up_proj`` / ``down_proj``
  (:func:`shrinknet.blocks.gated_ffn_site`; neuron j is row j of gate_proj and up_proj and column j of
  down_proj); a plain FFN is a Linear / Conv1D followed by another whose input has the first one's
  output shape, with only elementwise modules called in between (:func:`find_pairs`; neuron j is row j
  of the first and column j of the second). ``units="ffn"`` (and the default in a transformer) picks the
  gated MLPs and the plain FFNs inside the modules that hold attention (not e.g. BERT's pooler);
* **gated**, **cut** as every block-of-columns unit (:mod:`shrinknet.units.site`); a gated MLP's
  ``intermediate_size`` follows the cut;
* **saved** through the Linear / Conv1D shapes (:mod:`shrinknet.units.linear`);
* **costed** by measuring the cut.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import blocks
from .._validation import ShrinkNetError
from .base import Trace
from .linear import is_act
from .site import SiteKind


def weight_in(m) -> int:
    return int(m.nx if blocks.is_conv1d(m) else m.in_features)


def find_pairs(calls, sites) -> dict[str, str]:
    """{producer: consumer} for the plain FFN blocks of a transformer: a Linear / Conv1D followed by
    another whose input has the first one's output shape, with only elementwise modules (activations,
    dropout) called in between, neither of them part of an attention or gated-MLP site. (An
    activation written as a function call is not seen, and elementwise too.)"""
    taken = {r.name for s in sites for r in s.producers} | {s.consumer for s in sites}
    pairs = {}
    for k, (n, m, _, o) in enumerate(calls):
        if not blocks.is_dense(m) or n in taken or not isinstance(o, torch.Tensor):
            continue
        for n2, m2, i2, _ in calls[k + 1:]:
            if blocks.is_dense(m2):
                if (n2 not in taken and isinstance(i2, torch.Tensor) and tuple(i2.shape) == tuple(o.shape)
                        and weight_in(m2) == blocks.n_out(m)):
                    pairs[n] = n2
                break
            if not (is_act(m2) or isinstance(m2, (nn.Dropout, nn.Identity))):
                break
    return pairs


def pairs(trace: Trace) -> dict[str, str]:
    """{producer: consumer} of every plain FFN of the traced model (none outside a transformer)."""
    return trace.cached("ffn pairs", lambda: find_pairs(trace.calls, [*trace.heads, *trace.gated])
                        if trace.transformer else {})


def in_blocks(trace: Trace) -> dict[str, str]:
    """:func:`pairs` inside the modules that hold attention (a block's FFN, not e.g. BERT's pooler)."""
    def make():
        roots = blocks.block_roots(trace.heads)
        return {n: c for n, c in pairs(trace).items()
                if not trace.heads or any(r == "" or n.startswith(r + ".") for r in roots)}
    return trace.cached("ffn in blocks", make)


class FFNKind(SiteKind):
    """A plain FFN's neurons (see the module's docstring)."""
    name = "ffn"
    noun = "FFN"
    selectors = ("ffn",)

    def select(self, selector, trace):
        if not trace.transformer:
            raise ShrinkNetError("units: 'ffn' selects a transformer's FFN neurons, but the model has no "
                                 "supported attention module or gated MLP; name its Linear layers instead")
        return list(in_blocks(trace))

    def site(self, name, trace):
        consumer = pairs(trace).get(name)
        return None if consumer is None else blocks.ffn_site(name, trace.mods[name], consumer)


class GatedFFNKind(SiteKind):
    """A gated MLP's neurons (see the module's docstring)."""
    name = "gated-ffn"
    noun = "gated MLP"
    selectors = ("ffn",)

    def select(self, selector, trace):
        return [s.name for s in trace.gated]

    def site(self, name, trace):
        return next((s for s in trace.gated if s.name == name), None)

    def after_cut(self, model, site, kept: int) -> None:
        mlp = model.get_submodule(site.name) if site.name else model
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = kept


FFN = FFNKind()
GATED_FFN = GatedFFNKind()

__all__ = ["FFN", "FFNKind", "GATED_FFN", "GatedFFNKind", "find_pairs", "in_blocks", "pairs", "weight_in"]
