"""Neuron gates on any model: the one gated-model interface, and gates on any PyTorch model.

Every prunable unit has a *gate* (gain) on its output: 1 = as trained, 0 = removed. Criteria, the
pruning loop and the oracle act only through the gates and never touch the weights. :class:`Gated`
is the interface every gated model presents (gates, switching a unit, active units, evaluation
with per-sample gate rows, and the few derivatives and statistics the criteria read); two classes
implement it: :class:`shrinknet.MLP` (the paper's net, gates built in, closed-form derivatives) and
:class:`GatedModel` (any ``nn.Module``, gates through forward hooks, autograd).

A unit of a :class:`GatedModel` is one output feature of an ``nn.Linear`` or one output channel of an
``nn.Conv2d`` (a channel is one neuron). Where the gate sits: a unit's output is taken *after* the
modules that only post-process it: a BatchNorm fed directly by the layer, then an activation module
fed directly by that. So for ``Conv2d -> BatchNorm2d -> ReLU`` the gate multiplies the ReLU's
output, and gate 0 silences the channel for every consumer, exactly as physical removal does
(BatchNorm of a zero channel is not zero, so gating the bare conv output would not match). An
activation written as a function call (``F.relu`` inside ``forward``) has no module to hook: the gate
then sits before it, which is still exact for removal when f(0) = 0 (ReLU, GELU, tanh, SiLU, ...), but
expands the Taylor criteria in a pre-activation gain (identical for ReLU, since relu(g x) = g relu(x)
for g >= 0).

    >>> gm = GatedModel(model, units=["features.0", "classifier.1"], example_input=X[:1])
    >>> gm.set_gate(0, 3, 0.0)          # switch channel 3 of features.0 off
    >>> gm(X)                           # the model's output with that channel removed
"""
from __future__ import annotations

import contextlib
import copy as _copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import derivatives
from .activations import output_activation as check_output
from ._validation import ShrinkNetError, all_finite, as_tensor
from .dependency import UNIT_TYPES, dependency_graph, group_of


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
    * ``unit_derivatives(ctx, second, compensated)``, ``unit_outputs(ctx)``, ``fan_in(l)``,
      ``fan_out(l)``: what the Taylor, statistics and weight-norm criteria read;
    * ``clone(dtype, device)``.

    ``layered`` is True where the model is a stack of dense layers whose exact oracle can use rank-1
    updates and the compiled kernel (the MLP); the oracle chooses its method from it.
    """

    layered = False

    @property
    def n_hidden_layers(self) -> int:
        raise NotImplementedError

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


#: per-channel modules that belong to the unit when they directly consume its output
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
#: elementwise activation modules that belong to the unit when they directly consume it
ACT_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
             nn.Mish, nn.Hardswish, nn.Hardtanh)
#: activation values (summed over all layers) one forward pass may hold: sets the rows per pass. Small
#: enough that big tensors are not handed back to the OS after every pass (which made a CNN's taylor2
#: several times slower; docs/PERFORMANCE.md), large enough for few passes on MLPs.
ACTIVATION_BUDGET = 1 << 24
#: fallback / ceiling of samples per forward pass
BATCH = 16384


@dataclass
class Unit:
    """One group of prunable units: the output features / channels of one module."""
    name: str            # the producing module (its name in model.named_modules())
    kind: str            # "linear" or "conv2d"
    size: int            # number of units
    gate_at: str         # the module whose output the gate multiplies (name, or the producer)
    chain: tuple         # producer, then the BatchNorm / activation modules that belong to it

    @property
    def channel_dim(self) -> int:
        return 1 if self.kind == "conv2d" else -1


def _trace(model: nn.Module, x: torch.Tensor):
    """Run model(x) once and record, in execution order, every leaf module call (name, module, in, out)."""
    calls, handles = [], []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: calls.append((name, m, i[0] if i else None, o))))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ShrinkNetError(f"model: a forward pass on example input of shape {tuple(x.shape)} failed "
                             f"({type(e).__name__}: {e})") from None
    finally:
        for h in handles:
            h.remove()
    return calls, out


def find_units(model: nn.Module, example_input: torch.Tensor, units=None) -> list[Unit]:
    """Resolve ``units`` (module names and/or module types; None = every Linear / Conv2d except the one
    that produces the model's output) to :class:`Unit` records, in execution order."""
    calls, out = _trace(model, example_input)
    mods = dict(model.named_modules())
    counts: dict[str, int] = {}
    for name, *_ in calls:
        counts[name] = counts.get(name, 0) + 1
    if units is None:
        cand = [n for n, m, _, _ in calls if isinstance(m, UNIT_TYPES)]
        chosen = list(dict.fromkeys(cand[:-1]))   # the last Linear/Conv2d called produces the output
        chosen = _independent(model, example_input, [_unit(n, calls) for n in chosen])
    else:
        if isinstance(units, (str, type)):
            units = [units]
        chosen = []
        for u in units:
            if isinstance(u, type):
                hits = [n for n, m, _, _ in calls if isinstance(m, u)]
                if not issubclass(u, UNIT_TYPES):
                    raise ShrinkNetError(f"units: expected module names or the types nn.Linear / nn.Conv2d, "
                                         f"got type {u.__name__}")
                hits = [n for n in hits if not _feeds_output(n, calls, out)]
                chosen += hits
            elif isinstance(u, str):
                if u not in mods:
                    raise ShrinkNetError(f"units: no module named {u!r} in the model "
                                         f"(Linear/Conv2d modules: {', '.join(_unit_names(model)) or 'none'})")
                if not isinstance(mods[u], UNIT_TYPES):
                    raise ShrinkNetError(f"units: module {u!r} is a {type(mods[u]).__name__}; expected "
                                         f"nn.Linear or nn.Conv2d (layer type not supported)")
                if u not in counts:
                    raise ShrinkNetError(f"units: module {u!r} is never called in the model's forward pass")
                if _feeds_output(u, calls, out):
                    raise ShrinkNetError(f"units: module {u!r} produces the model's output; its units are "
                                         f"outputs, not hidden neurons")
                chosen.append(u)
            else:
                raise ShrinkNetError(f"units: expected module names (str) or types, got {u!r}")
        chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ShrinkNetError("units: expected at least one nn.Linear or nn.Conv2d with hidden units, got none")
    for n in chosen:
        if counts.get(n, 0) != 1:
            raise ShrinkNetError(f"units: module {n!r} is called {counts.get(n, 0)} times in one forward pass; "
                                 f"expected once (shared layers cannot be gated per use)")
    order = {n: i for i, (n, *_) in enumerate(calls)}
    return [_unit(n, calls) for n in sorted(chosen, key=order.get)]


def _independent(model, x, units) -> list[str]:
    """Names of the units that can be removed on their own (not coupled through a residual addition
    and the like); all of them where the model cannot be traced into a dependency graph."""
    try:
        graph = dependency_graph(_copy.deepcopy(model), x)
    except ShrinkNetError:
        return [u.name for u in units]
    m = graph.model
    ok = []
    for u in units:
        try:
            group_of(graph, m, u, [0])
            ok.append(u.name)
        except ShrinkNetError:
            pass
    return ok


def rows_per_pass(model, x) -> int:
    """Samples per forward pass so that all layers' outputs together stay within ACTIVATION_BUDGET."""
    calls, _ = _trace(model, x)
    per_sample = sum(o.numel() for *_, o in calls if isinstance(o, torch.Tensor))
    return int(max(16, min(BATCH, ACTIVATION_BUDGET // max(1, per_sample))))


def _unit_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, UNIT_TYPES)]


def _feeds_output(name, calls, out) -> bool:
    for n, m, i, o in calls:
        if n == name:
            return _chain_end(calls, n, o)[1] is out
    return False


def _chain_end(calls, name, out):
    """Follow `out` through a directly consuming BatchNorm, then a directly consuming activation."""
    chain, cur = [name], out
    for types in (NORM_TYPES, ACT_TYPES):
        for n, m, i, o in calls:
            if i is cur and isinstance(m, types) and n not in chain:
                chain.append(n)
                cur = o
                break
    return chain, cur


def _unit(name, calls) -> Unit:
    _, mod, _, out = next(c for c in calls if c[0] == name)
    chain, _ = _chain_end(calls, name, out)
    kind = "linear" if isinstance(mod, nn.Linear) else "conv2d"
    size = mod.out_features if kind == "linear" else mod.out_channels
    return Unit(name, kind, int(size), chain[-1], tuple(chain))




class GatedModel(Gated):
    """Any model with gates on chosen Linear output features / Conv2d output channels.

    Parameters
    ----------
    model : nn.Module
        Copied (unless ``copy=False``), so the caller's model never carries the gate hooks; the
        copy is put in eval mode (BatchNorm statistics and dropout fixed, as for pruning).
    units : list of module names and/or types (nn.Linear, nn.Conv2d), optional
        Which modules' outputs are prunable units; by default every Linear and Conv2d except the
        one producing the model's output.
    example_input : tensor
        One batch the model accepts (a single sample is enough), used to find the modules'
        order and the BatchNorm / activation modules that belong to each unit.
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
        if example_input is None:
            raise ShrinkNetError("example_input: expected a tensor the model accepts (one sample is enough), got None")
        p = next(iter(model.parameters()), None)
        x = as_tensor(example_input, "example_input", p.dtype if p is not None else torch.float32,
                      p.device if p is not None else None)
        self.model = (_copy.deepcopy(model) if copy else model).eval()
        self.output_activation = check_output(output_activation)
        self.input_shape = tuple(x.shape[1:])
        self.units = find_units(self.model, x[:1], units)
        self.batch_rows = rows_per_pass(self.model, x[:1])
        dt = p.dtype if p is not None else torch.float32
        for l, u in enumerate(self.units):
            self.register_buffer(f"gate{l}", torch.ones(u.size, dtype=dt, device=x.device))
        self._finish()

    def _finish(self):
        self._override: dict[int, torch.Tensor] = {}
        self._plans = None            # per unit, its consumers' input indices (fan_out), made on first use
        self._handles = []
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            self._handles.append(mods[u.gate_at].register_forward_hook(self._make_hook(l)))

    def _make_hook(self, l: int):
        dim = self.units[l].channel_dim

        def hook(module, inputs, out):
            g = self._override.get(l)
            if g is None:
                g = self._buffers[f"gate{l}"]
            # gate (K,) or per-sample (B, K), broadcast along the unit's channel dimension
            ones = [1] * (out.ndim - 2)
            if dim == 1:                  # out (B, K, H, W): (K, 1, 1) or (B, K, 1, 1)
                g = g.reshape(*g.shape, *ones)
            elif g.ndim == 2:             # out (B, ..., K): (B, 1.., K)
                g = g.reshape(g.shape[0], *ones, g.shape[1])
            return out * g
        return hook

    def detach_hooks(self) -> nn.Module:
        """Remove the gate hooks and return the bare wrapped model (gates no longer apply)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        return self.model

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

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.model(X)

    def logits(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        if gates is None:
            return self.model(X)
        with self.overriding({l: g for l, g in enumerate(gates) if g is not None}):
            return self.model(X)

    @torch.no_grad()
    def outputs(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """:meth:`logits` without autograd, in passes of batch_rows samples (gates: (K,) per group)."""
        b = self.batch_rows
        with self.overriding({l: g for l, g in enumerate(gates or []) if g is not None}):
            return torch.cat([self.model(X[i:i + b]) for i in range(0, X.shape[0], b)])

    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """Per group: sum_n o dE/do (= g dE/dg) and, with second, the Gauss-Newton estimate of
        sum_n o^2 d2E/do^2 (= g^2 sum_n J^T H J, J = dz/dg per sample), by autograd."""
        grads, gns = derivatives.gauss_newton(self, ctx.X, ctx.T, ctx.loss, second)
        return [g * d for g, d in zip(self.gates, grads)], [g * g * h for g, h in zip(self.gates, gns)]

    @torch.no_grad()
    def unit_outputs(self, ctx):
        """Yield (group, un-gated output of its units on a batch) over all of ctx.X."""
        got, handles = [], []
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            # registered before the gate hook, so it sees the un-gated output
            handles.append(mods[u.gate_at].register_forward_hook(lambda m, i, o, l=l: got.append((l, o.detach())),
                                                                 prepend=True))
        try:
            b, X = self.batch_rows, ctx.X
            for i in range(0, X.shape[0], b):
                got.clear()
                self.model(X[i:i + b])
                yield from list(got)
        finally:
            for h in handles:
                h.remove()

    def _weight(self, name):
        W = dict(self.model.named_modules())[name].weight.detach()
        return W.reshape(W.shape[0], W.shape[1], -1)                   # (out, in, kernel positions)

    def plans(self):
        """Per group, per unit: {consumer module: its input indices fed by that unit} (from the
        dependency graph: after a flatten, a channel's whole block of columns)."""
        if self._plans is None:
            m = self.bare_copy().eval()
            graph = dependency_graph(m, torch.zeros(1, *self.input_shape, dtype=self.gates[0].dtype,
                                                    device=self.gates[0].device))
            self._plans = [[group_of(graph, m, u, [j]) for j in range(u.size)] for u in self.units]
        return self._plans

    def fan_in(self, layer: int) -> torch.Tensor:
        """(K, M): each unit's incoming weights (Linear row / Conv2d filter), inputs fed by removed units zeroed."""
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
        own = {u.name: k for k, u in enumerate(self.units)}
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
        m = _copy.deepcopy(self.model)
        for mod in m.modules():
            for i in ids:
                mod._forward_hooks.pop(i, None)
        return m

    def clone(self, dtype=None, device=None) -> "GatedModel":
        m = self.bare_copy()
        if dtype is not None or device is not None:
            m = m.to(dtype=dtype, device=device)
        new = GatedModel.__new__(GatedModel)
        Gated.__init__(new)
        new.model, new.output_activation, new.input_shape = m, self.output_activation, self.input_shape
        new.units, new.batch_rows = list(self.units), self.batch_rows
        for l, g in enumerate(self.gates):
            new.register_buffer(f"gate{l}", g.detach().clone().to(dtype=dtype or g.dtype, device=device or g.device))
        new._finish()
        return new

    def __getstate__(self):
        # the gate hooks are closures over self: pickle the bare model and hook it again on load
        state = self.__dict__.copy()
        state["_modules"] = {**self._modules, "model": self.bare_copy()}
        state["_handles"], state["_override"] = [], {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._finish()

    def extra_repr(self) -> str:
        return f"units={self.unit_names}, active={self.n_active()}/{sum(self.hidden_sizes)}"


__all__ = ["Gated", "GatedModel", "Unit", "find_units", "rows_per_pass"]
