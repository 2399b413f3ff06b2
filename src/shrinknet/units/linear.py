"""The output features of an ``nn.Linear`` (or Hugging Face ``Conv1D``) as units.

* **found**: a Linear / Conv1D the model calls once; the gate sits after the modules that only
  post-process its output: a BatchNorm fed directly by the layer, then an activation module fed
  directly by that (:func:`chain_end`), so gate 0 silences the feature for every consumer;
* **gated** on that last module's output, along the last dimension;
* **cut** on Torch-Pruning's dependency graph: the layer's rows, its BatchNorm's features, every
  consumer's columns (:mod:`shrinknet.dependency` refuses a coupled layer by name);
* **saved** as the shapes of the Linear / Conv1D / BatchNorm1d layers, given back to a template on load;
* **costed** by measuring its cut (the default of :class:`~shrinknet.units.base.UnitKind`).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import blocks
from ..dependency import UNIT_TYPES, group_of, out_fn
from .base import Trace, Unit, UnitKind

#: per-channel modules that belong to the unit when they directly consume its output
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
#: elementwise activation modules that belong to the unit when they directly consume it
ACT_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
             nn.Mish, nn.Hardswish, nn.Hardtanh)


def is_unit_type(m) -> bool:
    return isinstance(m, UNIT_TYPES) or blocks.is_conv1d(m)


def is_act(m) -> bool:
    # Hugging Face's activation modules (GELUActivation, NewGELUActivation, ...) are elementwise too
    return isinstance(m, ACT_TYPES) or type(m).__module__.startswith("transformers.activations")


def chain_end(calls, name, out):
    """Follow `out` through a directly consuming BatchNorm, then a directly consuming activation."""
    chain, cur = [name], out
    for test in (lambda m: isinstance(m, NORM_TYPES), is_act):
        for n, m, i, o in calls:
            if i is cur and test(m) and n not in chain:
                chain.append(n)
                cur = o
                break
    return chain, cur


def resize_batchnorm(m) -> None:
    """Fresh parameters and statistics of ``m.num_features`` for a BatchNorm."""
    k = m.num_features
    if m.affine:
        m.weight, m.bias = nn.Parameter(m.weight.new_empty(k)), nn.Parameter(m.bias.new_empty(k))
    if m.track_running_stats:
        m.running_mean, m.running_var = m.running_mean.new_empty(k), m.running_var.new_empty(k)


class LinearKind(UnitKind):
    """Output features of a Linear / Conv1D (see the module's docstring)."""
    name = "linear"
    noun = "layer"
    needs_graph = True
    #: the layers whose shape attributes a cut of this kind changes (exact types)
    shaped = {nn.Linear: ("in_features", "out_features"), nn.BatchNorm1d: ("num_features",)}

    def owns(self, m) -> bool:
        return is_unit_type(m) and not isinstance(m, nn.Conv2d)

    def size_of(self, m) -> int:
        return blocks.n_out(m)

    def unit(self, name: str, trace: Trace) -> Unit | None:
        call = trace.call(name)
        if call is None or not self.owns(call[1]):
            return None
        chain, _ = chain_end(trace.calls, name, call[3])
        return Unit(name, self.name, int(self.size_of(call[1])), chain[-1], tuple(chain))

    def cut(self, model, unit, kept, *, graph=None, example_input=None, fill=None) -> None:
        mods = dict(model.named_modules())
        removed = sorted(set(range(unit.size)) - set(kept))
        group_of(graph, model, unit, removed)        # raises where a dependency cannot be handled
        graph.get_pruning_group(mods[unit.name], out_fn(mods[unit.name]), idxs=removed).prune()

    def resizes(self, m) -> bool:
        """Whether this kind records ``m``'s shape on save and gives it the stored one on load."""
        return type(m) in self.shaped or blocks.is_conv1d(m)

    def shapes(self, model) -> dict:
        return {n: ({"nf": int(m.nf), "nx": int(m.nx)} if blocks.is_conv1d(m) else
                    {a: getattr(m, a) for a in self.shaped[type(m)]})
                for n, m in model.named_modules() if self.resizes(m)}

    def resizer(self, model, path):
        def resize(name, m, attrs) -> bool:
            if not self.resizes(m):
                return False
            for a, v in attrs.items():
                setattr(m, a, int(v))
            with torch.no_grad():
                self.rebuild(m)
            return True
        return resize

    def rebuild(self, m) -> None:
        """Fresh parameters of the shape ``m``'s attributes now say."""
        if blocks.is_conv1d(m):
            m.weight = nn.Parameter(m.weight.new_empty(m.nx, m.nf))
            m.bias = nn.Parameter(m.bias.new_empty(m.nf))
        elif isinstance(m, nn.Linear):
            m.weight = nn.Parameter(m.weight.new_empty(m.out_features, m.in_features))
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias.new_empty(m.out_features))
        else:
            resize_batchnorm(m)


LINEAR = LinearKind()

__all__ = ["ACT_TYPES", "LINEAR", "NORM_TYPES", "LinearKind", "chain_end", "is_act", "is_unit_type",
           "resize_batchnorm"]
