"""A gated model's forward pass over the evaluation data, kept for the oracle and the criteria.

:class:`Cache` is the pass every evaluator keeps (any model fills ``z``, its output). The functions
here are the MLP's pass (its evaluator, :mod:`shrinknet.evaluators.dense`, calls them): every hidden
layer's pre-activations, activations and gated outputs are kept, and a gate change recomputes only
the layers downstream of it (identical to a fresh pass). The output layer's product goes through the
compiled kernel where it applies (torch's BLAS call for a matrix of a handful of columns costs several
times as much, and the pruning loop measures the net after every removal); the model's own forward
pass stays plain PyTorch.

The caches belong to a :class:`shrinknet.context.PruningContext`, never to the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import kernel


@dataclass
class Cache:
    """One forward pass. pre[l]: (N, K_l) pre-activations of hidden layer l; act[l]: its un-gated
    outputs f(x_l); out[l]: its gated outputs; z: (N, n_out) output pre-activations (the MLP's pass
    fills all; any other model's only z)."""
    X: torch.Tensor
    pre: list = field(default_factory=list)
    act: list = field(default_factory=list)
    out: list = field(default_factory=list)
    z: torch.Tensor | None = None

    def inputs_to(self, layer: int) -> torch.Tensor:
        """Input of linear layer `layer` (0 = X, l = out[l-1])."""
        return self.X if layer == 0 else self.out[layer - 1]


def version_key(tensors) -> tuple:
    """Where each tensor's memory is and how often it has been changed in place: equal keys mean
    equal contents (torch bumps ``_version`` on every in-place change)."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


@torch.no_grad()
def build(model, X: torch.Tensor) -> Cache:
    """The MLP's forward pass on X with its current weights and gates."""
    c = Cache(X)
    forward_from(model, c, 0, X)
    return c


@torch.no_grad()
def update(model, c: Cache, layer: int, unit: int) -> bool:
    """Bring the MLP's cache c up to date after gate (layer, unit) changed (always possible: True)."""
    g = model.gates[layer]
    if c.out[layer].device.type == "cpu" and c.out[layer].dtype in (torch.float32, torch.float64):
        # in NumPy: torch's indexing of one column costs tens of microseconds
        out = c.out[layer].numpy()[:, unit]
        np.multiply(c.act[layer].numpy()[:, unit], g.numpy()[unit], out=out)
    else:
        c.out[layer][:, unit] = c.act[layer][:, unit] * g[unit]
    forward_from(model, c, layer + 1, c.out[layer])
    return True


@torch.no_grad()
def outputs(model, X: torch.Tensor, gates=None) -> torch.Tensor:
    """The MLP's output z on X without autograd, ``gates`` (one (K,) tensor or None per group)
    replacing its own for this pass; the output product is the one the caches use."""
    c = Cache(X)
    forward_from(model, c, 0, X, gates)
    return c.z


def forward_from(model, c: Cache, first: int, h: torch.Tensor, gates=None) -> None:
    """Recompute hidden layers first.. and the output of cache c from h (the input of layer first),
    with the model's gates or, where ``gates`` gives one for a layer, that one."""
    del c.pre[first:], c.act[first:], c.out[first:]
    layers = list(model._modules["layers"])             # (slicing a ModuleList builds a new one)
    act, own = model.activation, model.gates
    gates = own if gates is None else [o if g is None else g for o, g in zip(own, gates)]
    for lin, g in zip(layers[first:-1], gates[first:]):
        x = lin(h)
        a = act.f(x)
        h = a * g
        c.pre.append(x), c.act.append(a), c.out.append(h)
    lin = layers[-1]
    z = kernel.linear(h, lin.weight, lin.bias)
    c.z = lin(h) if z is None else z
