"""Neuron gates on any model: the one gated-model interface, and gates on any PyTorch model.

Every prunable unit has a *gate* (gain) on its output: 1 = as trained, 0 = removed. Criteria, the
pruning loop and the oracle act only through the gates and never touch the weights. :class:`Gated`
is the interface every gated model presents (gates, switching a unit, active units, evaluation
with per-sample gate rows, and the few derivatives and statistics the criteria read); two classes
implement it: :class:`shrinknet.MLP` (the paper's net, gates built in, closed-form derivatives) and
:class:`GatedModel` (any ``nn.Module``, gates through forward hooks, autograd).

Which units a model has is found by :mod:`shrinknet.finding`. A unit of a :class:`GatedModel` is one output feature of an ``nn.Linear`` or one output channel of an
``nn.Conv2d`` (a channel is one neuron). Where the gate sits: a unit's output is taken *after* the
modules that only post-process it: a BatchNorm fed directly by the layer, then an activation module
fed directly by that. So for ``Conv2d -> BatchNorm2d -> ReLU`` the gate multiplies the ReLU's
output, and gate 0 silences the channel for every consumer, exactly as physical removal does
(BatchNorm of a zero channel is not zero, so gating the bare conv output would not match). An
activation written as a function call (``F.relu`` inside ``forward``) has no module to hook: the gate
then sits before it, which is still exact for removal when f(0) = 0 (ReLU, GELU, tanh, SiLU, ...), but
expands the Taylor criteria in a pre-activation gain (identical for ReLU, since relu(g x) = g relu(x)
for g >= 0).

A transformer's FFN neurons and attention heads are units too (:mod:`shrinknet.blocks`): each owns a
block of columns of one linear layer's input (the FFN's second projection, the attention's output
projection), and its gate multiplies that block through a forward pre-hook on the layer.
``nn.MultiheadAttention``, whose output projection no hook sees, is replaced in the working copy by
:class:`shrinknet.attention.MultiheadAttention`. Inputs may be a tensor, a tuple or a dict of tensors
(:mod:`shrinknet.inputs`).

    >>> gm = GatedModel(model, units=["features.0", "classifier.1"], example_input=X[:1])
    >>> gm.set_gate(0, 3, 0.0)          # switch channel 3 of features.0 off
    >>> gm(X)                           # the model's output with that channel removed
    >>> tm = GatedModel(bert, units=["heads", "ffn"], example_input={"input_ids": ids[:1]})
"""
from __future__ import annotations

import contextlib
import copy as _copy

import numpy as np
import torch
from torch import nn

from . import blocks, pooling
from . import inputs as batch
from .activations import output_activation as check_output
from ._validation import ShrinkNetError, all_finite, as_tensor, check_materialized, strip_compiled, unwrap_compiled
from .dependency import dependency_graph, group_of
from .finding import (ACT_TYPES, NORM_TYPES, Unit, _check_batch_first, downstream_sizes, find_units,  # noqa: F401
                      plain_attention, rows_per_pass, traced_units)
from .units import KINDS, kind_of


class Gated(nn.Module):
    """The gated-model interface that the pruning loop, the criteria and the oracle use.

    A subclass keeps one gate buffer per unit group, named ``gate0``, ``gate1``, ... (``(K_l,)``,
    1 = as trained, 0 = removed) and defines:

    * ``n_hidden_layers``, ``unit_names``, ``output_activation``, ``input_shape``;
    * ``logits(X, gates=None)``: the output before the output activation, differentiable; ``gates``
      replaces the gates for this pass, one entry per group: ``(K,)``, per-sample rows ``(B, K)``
      (autograd flows through them) or None for the group's own gates;
    * ``outputs(X)``: the same without autograd, over all of X in passes sized to the model;
    * ``state_tensors()``: every tensor besides the input that the output depends on (a cached
      output is valid while none of them has changed);
    * ``unit_outputs(chunks)``, ``fan_in(l)``, ``fan_out(l)``: what the statistics and weight-norm
      criteria read;
    * ``clone(dtype, device)``.

    How a model is evaluated (its kept pass, the exact oracle, its derivatives, its compensation) is
    its evaluator's business (:mod:`shrinknet.evaluators`, chosen once per run); the model only
    computes.
    """

    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """Older form of ``ctx.unit_derivatives(second, compensated)`` (the run's evaluator computes them)."""
        return ctx.unit_derivatives(second, compensated)

    @property
    def n_hidden_layers(self) -> int:
        raise NotImplementedError

    @property
    def n_groups(self) -> int:
        """The number of unit groups: an MLP's hidden layers; another model's gated Linear / Conv2d
        layers, FFN blocks and attention modules (``n_hidden_layers`` is the older name)."""
        return self.n_hidden_layers

    @property
    def gates(self) -> list[torch.Tensor]:
        b = self._buffers
        return [b[f"gate{l}"] for l in range(self.n_hidden_layers)]

    @property
    def hidden_sizes(self) -> list[int]:
        return [int(g.numel()) for g in self.gates]

    def set_gate(self, layer: int, unit: int, value: float) -> None:
        """Set one gate (no autograd)."""
        with torch.no_grad():
            self.gates[layer][unit] = value

    def set_gates(self, gates) -> "Gated":
        """Copy gate values in (a list with one (K_l,) array per group)."""
        if len(gates) != self.n_hidden_layers:
            raise ShrinkNetError(f"gates: expected {self.n_hidden_layers} arrays, got {len(gates)}")
        for l, (g, k, name) in enumerate(zip(gates, self.hidden_sizes, self.unit_names)):
            g = as_tensor(g, f"gates[{l}]", self.gates[l].dtype, self.gates[l].device)
            if g.shape != (k,):
                raise ShrinkNetError(f"gates[{l}] ({name}): expected shape ({k},), got {tuple(g.shape)}")
            with torch.no_grad():
                self.gates[l].copy_(g)
        return self

    def reset_gates(self) -> "Gated":
        with torch.no_grad():
            for g in self.gates:
                g.fill_(1.0)
        return self

    def active(self) -> list[np.ndarray]:
        """Indices of the units not removed (gate != 0), per group."""
        return [torch.nonzero(g != 0).flatten().cpu().numpy() for g in self.gates]

    def n_active(self) -> int:
        return int(sum(int((g != 0).sum()) for g in self.gates))

    def check_finite(self) -> None:
        """Raise, naming it, where a weight, buffer or gate is NaN or infinite."""
        for name, p in self._named_tensors():
            if p.is_floating_point() and not all_finite(p.detach()):
                raise ShrinkNetError(f"model parameter {name}: expected finite values, got NaN/inf")

    def _named_tensors(self):
        return [*self.named_parameters(), *self.named_buffers()]

    def state_tensors(self) -> list[torch.Tensor]:
        return [*self.gates, *self.parameters(), *(b for n, b in self.named_buffers() if not n.startswith("gate"))]


class GatedModel(Gated):
    """Any model with gates on chosen Linear output features / Conv2d output channels.

    Parameters
    ----------
    model : nn.Module
        Copied (unless ``copy=False``), so the caller's model never carries the gate hooks; the
        copy is put in eval mode (BatchNorm statistics and dropout fixed, as for pruning).
    units : list of module names, module types (nn.Linear, nn.Conv2d), "ffn" and "heads", optional
        Which units (see :func:`find_units`): by default a transformer's FFN neurons, or in any
        other model every Linear and Conv2d except the one producing the model's output.
    example_input : tensor, tuple or dict of tensors
        One batch as the model takes it (a single sample is enough), used to find the modules'
        order, the BatchNorm / activation modules that belong to each unit, and the transformer
        structures.
    output_activation : {"identity", "sigmoid", "softmax"}
        What the losses apply to the model's output (identity: the output is logits, as for
        ``nn.CrossEntropyLoss``).
    copy : bool
        Wrap a deep copy of ``model`` (default) or ``model`` itself.

    Attributes
    ----------
    units : list of Unit, in forward-pass order; ``gates[l]`` is the (K_l,) gate of ``units[l]``.
    """

    def __init__(self, model: nn.Module, units=None, example_input=None, output_activation: str = "identity",
                 copy: bool = True):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
        model = unwrap_compiled(model)                 # (a compiled backward cannot be taken twice)
        check_materialized(model)
        if example_input is None:
            raise ShrinkNetError("example_input: expected a batch the model accepts (a tensor, or a tuple or dict of "
                                 "tensors; one sample is enough), got None")
        p = next(iter(model.parameters()), None)
        dt = p.dtype if p is not None else torch.float32
        x = batch.check(example_input, "example_input", dt, p.device if p is not None else None)
        self.model = (strip_compiled(_copy.deepcopy(model)) if copy else model).eval()
        _replace_torch_attention(self.model)
        self.output_activation = check_output(output_activation)
        x = batch.take(x, slice(0, 1))
        self.input_shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None
        self.example = batch.clone(x)
        self.units, calls = traced_units(self.model, x, units)      # the one trace of the model
        _check_batch_first(self.model, x, self.units)
        self.batch_rows = rows_per_pass(self.model, x, calls)
        self.downstream = downstream_sizes(calls, self.units)
        dev = batch.leaves(x)[0].device
        for l, u in enumerate(self.units):
            self.register_buffer(f"gate{l}", torch.ones(u.size, dtype=dt, device=dev))
            fill = kind_of(u).fill_size(u)
            if fill:                      # what a removed group returns (a sublayer: 0, or its mean output)
                self.register_buffer(f"fill{l}", torch.zeros(fill, dtype=dt, device=dev))
        self._finish()

    def _finish(self):
        self._override: dict[int, torch.Tensor] = {}
        self._residual: dict = {}      # group -> (mean, M) while compensating(...) is on
        self._plans = None            # per unit, its consumers' input indices (fan_out), made on first use
        self._handles = []
        self._pools = pooling.pools(self.model)   # pooled without max_pool2d's indices where no graph is built
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            # the unit's kind says how the gate multiplies: gate_at's input (a pre-hook) or its output
            if kind_of(u).on_input:
                self._handles.append(mods[u.gate_at].register_forward_pre_hook(self._make_pre_hook(l)))
            else:
                self._handles.append(mods[u.gate_at].register_forward_hook(self._make_hook(l)))

    def _gate(self, l: int) -> torch.Tensor:
        g = self._override.get(l)
        return self._buffers[f"gate{l}"] if g is None else g

    def _make_hook(self, l: int):
        u, fill = self.units[l], f"fill{l}"
        gate = kind_of(u).gate

        def hook(module, inputs, out):
            return gate(u, out, self._gate(l), self._residual.get(l), self._buffers.get(fill))
        return hook

    def _make_pre_hook(self, l: int):
        u, fill = self.units[l], f"fill{l}"
        gate = kind_of(u).gate

        def hook(module, args):
            return (gate(u, args[0], self._gate(l), self._residual.get(l), self._buffers.get(fill)), *args[1:])
        return hook

    def detach_hooks(self) -> nn.Module:
        """Remove the gate hooks and return the bare wrapped model (gates no longer apply)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.model

    @contextlib.contextmanager
    def compensating(self, residuals: dict):
        """While on, a gate g moves its unit's columns x by ``x - (1 - g) r(x)`` instead of scaling them:
        ``residuals`` is {group: (mean (D,), None)} (r = x - mean) or {group: (None, M (D+1, D))}
        (r = [x, 1] @ M), from :func:`shrinknet.compensation.residual_maps`."""
        old = self._residual
        self._residual = residuals
        try:
            yield self
        finally:
            self._residual = old

    @contextlib.contextmanager
    def overriding(self, gates: dict):
        """Temporarily use other gate tensors: {group: (K,) or per-sample (B, K)} (autograd flows through)."""
        old = self._override
        self._override = {**old, **gates}
        try:
            yield self
        finally:
            self._override = old

    # ---- the interface -----------------------------------------------------------------
    @property
    def n_hidden_layers(self) -> int:
        return len(self.units)

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def channel_dim(self, layer: int) -> int:
        return self.units[layer].channel_dim

    def _named_tensors(self):
        # named as in the user's model (no "model." prefix), then the gates
        return [*self.model.named_parameters(), *self.model.named_buffers(),
                *((f"gate{l}", g) for l, g in enumerate(self.gates))]

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The wrapped model's output (logits) with the gates: ``gm(X)`` with X a tensor, tuple or dict,
        or as the model itself is called, ``gm(a, b)`` / ``gm(input_ids=...)``."""
        if kwargs and args:
            raise ShrinkNetError("GatedModel: expected positional or keyword inputs, got both")
        X = dict(kwargs) if kwargs else (args[0] if len(args) == 1 else tuple(args))
        with plain_attention(), pooling.strided_max_pooling(self._pools):
            return batch.logits_of(batch.call(self.model, X))

    def logits(self, X, gates=None) -> torch.Tensor:
        if gates is None:
            return self(X)
        with self.overriding({l: g for l, g in enumerate(gates) if g is not None}):
            return self(X)

    @torch.no_grad()
    def outputs(self, X, gates=None) -> torch.Tensor:
        """:meth:`logits` without autograd, in passes of batch_rows samples (gates: (K,) per group)."""
        b = self.batch_rows
        with self.overriding({l: g for l, g in enumerate(gates or []) if g is not None}):
            return torch.cat([self(batch.take(X, slice(i, i + b))) for i in range(0, batch.rows(X), b)])

    @torch.no_grad()
    def unit_outputs(self, chunks):
        """Yield (group, un-gated output of its units on a batch) over the (X, T) pieces ``chunks`` (or
        a context's data, read in passes of batch_rows); a transformer unit's output is its block of
        the consumer's input, as (..., K, block)."""
        if hasattr(chunks, "chunks"):                  # (a pruning context or a Data: the older form)
            chunks = chunks.chunks(self.batch_rows)
        got, handles = [], []
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            # registered before the gate hook, so it sees the un-gated output; its kind says how to read it
            see = kind_of(u).observe
            if u.on_input:
                handles.append(mods[u.gate_at].register_forward_pre_hook(
                    lambda m, a, l=l, u=u, see=see: got.append((l, see(u, a[0].detach()))), prepend=True))
            else:
                handles.append(mods[u.gate_at].register_forward_hook(
                    lambda m, i, o, l=l, u=u, see=see: got.append((l, see(u, o.detach()))), prepend=True))
        try:
            for Xb, _ in chunks:
                got.clear()
                self(Xb)
                yield from list(got)
        finally:
            for h in handles:
                h.remove()

    def fills(self) -> dict:
        """{group's name: what its removed units return (D,)} for the groups whose kind keeps one (a sublayer:
        0, or its mean after a removal with compensation "mean"); :func:`shrinknet.shrink` gives it to the cut."""
        return {u.name: self._buffers[f"fill{l}"] for l, u in enumerate(self.units) if f"fill{l}" in self._buffers}

    def _weight(self, name):
        W = blocks.weight_oi(dict(self.model.named_modules())[name]).detach()
        return W.reshape(W.shape[0], W.shape[1], -1)                   # (out, in, kernel positions)

    def plans(self):
        """Per group, per unit: {consumer module: its input indices fed by that unit} (from the
        dependency graph: after a flatten, a channel's whole block of columns; for a transformer
        unit, its block of the consumer's columns)."""
        if self._plans is None:
            m = self.bare_copy().eval()
            graph = None
            self._plans = []
            for u in self.units:
                plan = kind_of(u).plan(u)            # a kind that knows its consumers' columns says so
                if plan is not None:
                    self._plans.append(plan)
                    continue
                if graph is None:
                    graph = dependency_graph(m, self.example)
                self._plans.append([group_of(graph, m, u, [j]) for j in range(u.size)])
        return self._plans

    def fan_in(self, layer: int) -> torch.Tensor:
        """(K, M): each unit's incoming weights (Linear row / Conv2d filter; a transformer unit's rows of
        its projections), inputs fed by removed units zeroed."""
        u = self.units[layer]
        W = kind_of(u).fan_in(u, dict(self.model.named_modules()))
        if W is not None:                      # a kind that knows its incoming weights says so
            return W
        plans = self.plans()
        W = self._weight(self.units[layer].name)
        live = torch.ones(W.shape[1], dtype=torch.bool, device=W.device)
        for l, g in enumerate(self.gates):
            for j in torch.nonzero(g == 0).flatten().tolist():
                idx = plans[l][j].get(self.units[layer].name)
                if idx is not None:
                    live[idx] = False
        return (W * live[None, :, None]).reshape(W.shape[0], -1)

    def fan_out(self, layer: int) -> torch.Tensor:
        """(K, M): each unit's outgoing weights (its columns in every consumer), weights into removed
        units zeroed, padded with zeros to one length."""
        u = self.units[layer]
        W = kind_of(u).fan_out(u, dict(self.model.named_modules()))
        if W is not None:
            return W
        own = {u.name: k for k, u in enumerate(self.units) if not u.on_input}
        rows = []
        for plan in self.plans()[layer]:
            parts = []
            for name, idx in plan.items():
                W = self._weight(name)[:, idx]                               # (out, |idx|, kernel)
                if name in own:                                              # consumer rows already removed
                    W = W * (self.gates[own[name]] != 0)[:, None, None]
                parts.append(W.flatten())
            rows.append(torch.cat(parts) if parts else self.gates[layer].new_zeros(0))
        M = max((r.numel() for r in rows), default=0)
        return torch.stack([torch.nn.functional.pad(r, (0, M - r.numel())) for r in rows])

    # ---- copies ------------------------------------------------------------------------
    def bare_copy(self) -> nn.Module:
        """A deep copy of the wrapped model without the gate hooks."""
        ids = [h.id for h in self._handles]
        m = pooling.unpatch(_copy.deepcopy(self.model))      # (a copy taken inside a pass keeps no patch)
        for mod in m.modules():
            for i in ids:
                mod._forward_hooks.pop(i, None)
                mod._forward_pre_hooks.pop(i, None)
        return m

    def clone(self, dtype=None, device=None) -> "GatedModel":
        m = self.bare_copy()
        if dtype is not None or device is not None:
            m = m.to(dtype=dtype, device=device)
        new = GatedModel.__new__(GatedModel)
        Gated.__init__(new)
        new.model, new.output_activation, new.input_shape = m, self.output_activation, self.input_shape
        new.example = batch.to(self.example, dtype=dtype, device=device)
        new.units, new.batch_rows, new.downstream = list(self.units), self.batch_rows, list(self.downstream)
        for l, g in enumerate(self.gates):
            new.register_buffer(f"gate{l}", g.detach().clone().to(dtype=dtype or g.dtype, device=device or g.device))
            f = self._buffers.get(f"fill{l}")
            if f is not None:
                new.register_buffer(f"fill{l}", f.detach().clone().to(dtype=dtype or f.dtype, device=device or f.device))
        new._finish()
        return new

    def __getstate__(self):
        # the gate hooks are closures over self: pickle the bare model and hook it again on load
        state = self.__dict__.copy()
        state["_modules"] = {**self._modules, "model": self.bare_copy()}
        state["_handles"], state["_override"], state["_pools"] = [], {}, []
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._finish()

    def extra_repr(self) -> str:
        return f"units={self.unit_names}, active={self.n_active()}/{sum(self.hidden_sizes)}"


def training_flags(model: nn.Module) -> dict[str, bool]:
    """{module name: its training flag} for ``model`` and every submodule (a ``torch.compile`` wrapper's
    ``_orig_mod`` left out of the names, as shrinknet's copies leave the wrapper out)."""
    return {".".join(p for p in name.split(".") if p != "_orig_mod"): m.training
            for name, m in model.named_modules()}


def restore_training(model: nn.Module, flags: dict[str, bool]) -> nn.Module:
    """Give ``model`` and each submodule the training flag ``flags`` has for its name (from
    :func:`training_flags` of the model it was copied from); a module the flags do not name (a stub,
    a module swapped in) takes its parent's. Returns ``model``."""
    def walk(m: nn.Module, name: str, parent: bool) -> None:
        m.training = flags.get(name, parent)
        for child, sub in m.named_children():
            walk(sub, f"{name}.{child}" if name else child, m.training)
    walk(model, "", flags.get("", model.training))
    return model


def _replace_torch_attention(model: nn.Module) -> None:
    """Make a working copy ready for every unit kind (in place): e.g. nn.MultiheadAttention, whose output
    projection no hook sees, replaced by the equivalent module whose heads can be gated (the heads kind)."""
    for kind in KINDS.values():
        kind.prepare(model)


__all__ = ["Gated", "GatedModel", "Unit", "find_units", "plain_attention", "restore_training", "rows_per_pass",
           "training_flags"]
