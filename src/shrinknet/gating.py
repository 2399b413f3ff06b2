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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import blocks, compensation, derivatives
from . import inputs as batch
from .activations import output_activation as check_output
from ._validation import ShrinkNetError, all_finite, as_tensor, check_materialized, strip_compiled, unwrap_compiled
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
    """One group of prunable units: the output features / channels of one module, or a transformer
    structure (FFN neurons, attention heads) described by ``site``."""
    name: str            # the producing module, or the attention / gated-MLP module (its name in named_modules())
    kind: str            # "linear", "conv2d", or a site's kind: "ffn", "gated-ffn", "heads"
    size: int            # number of units
    gate_at: str         # the module whose output (or, for a site, whose input) the gate multiplies
    chain: tuple         # producer, then the BatchNorm / activation modules that belong to it
    site: blocks.Site | None = None

    @property
    def on_input(self) -> bool:
        """Whether the gate multiplies ``gate_at``'s input (a block of columns per unit) rather than its output."""
        return self.site is not None

    @property
    def block(self) -> int:
        return self.site.block if self.site is not None else 1

    @property
    def channel_dim(self) -> int:
        if self.site is not None:
            return -2            # unit outputs are read as (..., K, block)
        return 1 if self.kind == "conv2d" else -1


@contextlib.contextmanager
def plain_attention():
    """torch's fused transformer fast path off: it runs whole encoder layers in one kernel, past the
    Linear modules that carry the gates."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def _is_unit_type(m) -> bool:
    return isinstance(m, UNIT_TYPES) or blocks.is_conv1d(m)


def _is_act(m) -> bool:
    # Hugging Face's activation modules (GELUActivation, NewGELUActivation, ...) are elementwise too
    return isinstance(m, ACT_TYPES) or type(m).__module__.startswith("transformers.activations")


def _trace(model: nn.Module, x):
    """Run model(x) once and record, in execution order, every leaf module call (name, module, in, out)."""
    calls, handles = [], []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: calls.append((name, m, i[0] if i else None, o))))
    try:
        with torch.no_grad(), plain_attention():
            out = batch.logits_of(batch.call(model, x))
    except ShrinkNetError:
        raise
    except Exception as e:
        raise ShrinkNetError(f"model: a forward pass on example input ({batch.describe(x)}) failed; check the "
                             f"inputs (their keys, shapes, dtypes, token ids within the vocabulary) "
                             f"({type(e).__name__}: {e})") from None
    finally:
        for h in handles:
            h.remove()
    return calls, out


def _ffn_pairs(calls, sites) -> dict[str, str]:
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
            if not (_is_act(m2) or isinstance(m2, (nn.Dropout, nn.Identity))):
                break
    return pairs


def weight_in(m) -> int:
    return int(m.nx if blocks.is_conv1d(m) else m.in_features)


def find_units(model: nn.Module, example_input, units=None) -> list[Unit]:
    """Resolve ``units`` to :class:`Unit` records, in execution order.

    ``units``: None, or a list of module names, module types (nn.Linear, nn.Conv2d) and the strings
    "heads" and "ffn". None (or "ffn") picks, in a transformer (a model with a supported attention
    module), the FFN neurons of every block; in any other model None picks every Linear / Conv2d
    except the one that produces the output. A name may be a Linear / Conv2d / Conv1D (its output
    features), an attention module (its heads) or a gated MLP (its neurons); "heads" selects every
    supported attention module."""
    heads, gated, unknown = blocks.find_sites(model)
    sites_by_name = {s.name: s for s in [*heads, *gated]}
    calls, out = _trace(model, example_input)
    mods = dict(model.named_modules())
    counts: dict[str, int] = {}
    for name, *_ in calls:
        counts[name] = counts.get(name, 0) + 1
    pairs = _ffn_pairs(calls, [*heads, *gated]) if heads or gated else {}
    # a block's FFN lies inside the module that holds its attention (not e.g. BERT's pooler)
    roots = blocks.block_roots(heads)
    ffn = [n for n in pairs if not heads or any(r == "" or n.startswith(r + ".") for r in roots)]
    owner = {r.name: s for s in [*heads, *gated] for r in s.producers} | {s.consumer: s for s in [*heads, *gated]}
    if units is None:
        if heads or gated:
            chosen = [s.name for s in gated] + ffn
        else:
            cand = [n for n, m, _, _ in calls if _is_unit_type(m)]
            chosen = list(dict.fromkeys(cand[:-1]))   # the last Linear/Conv2d called produces the output
            chosen = _independent(model, example_input, [_unit(n, calls) for n in chosen])
    else:
        if isinstance(units, (str, type)):
            units = [units]
        chosen = []
        for u in units:
            if isinstance(u, type):
                if not issubclass(u, UNIT_TYPES):
                    raise ShrinkNetError(f"units: expected module names, 'heads' or the types nn.Linear / nn.Conv2d, "
                                         f"got type {u.__name__}")
                hits = [n for n, m, _, _ in calls if isinstance(m, u) and n not in owner]
                chosen += [n for n in hits if not _feeds_output(n, calls, out)]
            elif u == "ffn":
                if not (heads or gated):
                    raise ShrinkNetError("units: 'ffn' selects a transformer's FFN neurons, but the model has no "
                                         "supported attention module or gated MLP; name its Linear layers instead")
                chosen += [s.name for s in gated] + ffn
            elif u == "heads":
                if not heads:
                    extra = f" (attention modules of kinds it does not support: {', '.join(unknown[:5])})" if unknown else ""
                    raise ShrinkNetError(f"units: 'heads' selects attention heads, but the model has no supported "
                                         f"attention module{extra}")
                if unknown:
                    raise ShrinkNetError(f"units: attention module {unknown[0]!r} ({type(mods[unknown[0]]).__name__}) is "
                                         f"not a supported attention implementation; name the supported ones instead "
                                         f"(e.g. {heads[0].name!r})")
                chosen += [s.name for s in heads]
            elif isinstance(u, str):
                chosen.append(_check_name(u, mods, counts, calls, out, sites_by_name, owner, unknown))
            else:
                raise ShrinkNetError(f"units: expected module names (str), 'heads' or types, got {u!r}")
        chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ShrinkNetError("units: expected at least one nn.Linear, nn.Conv2d or transformer block with hidden "
                             "units, got none")
    found = []
    for n in chosen:
        s = sites_by_name.get(n)
        if s is None and n in pairs:
            s = blocks.ffn_site(n, mods[n], pairs[n])
        found.append(_unit(n, calls) if s is None else Unit(n, s.kind, s.size, s.consumer, (n,), s))
    for u in found:
        if counts.get(u.gate_at, 0) != 1:
            raise ShrinkNetError(f"units: module {u.gate_at!r} is called {counts.get(u.gate_at, 0)} times in one "
                                 f"forward pass; expected once (shared layers cannot be gated per use)")
    order = {n: i for i, (n, *_) in reversed(list(enumerate(calls)))}
    return sorted(found, key=lambda u: order.get(u.site.producers[0].name if u.site else u.name, 0))


def _check_name(u, mods, counts, calls, out, sites, owner, unknown) -> str:
    """A unit name the user gave, checked."""
    if u in sites:
        return u
    if u not in mods:
        names = [*sites, *_unit_names(mods)]
        raise ShrinkNetError(f"units: no module named {u!r} in the model (unit modules: "
                             f"{', '.join(names[:12]) or 'none'}{', ...' if len(names) > 12 else ''})")
    if u in unknown:
        raise ShrinkNetError(f"units: attention module {u!r} ({type(mods[u]).__name__}) is not a supported attention "
                             f"implementation (supported: q_proj/k_proj/v_proj/o_proj modules, BERT-style "
                             f"self/output, GPT-2 c_attn/c_proj, nn.MultiheadAttention)")
    if u in owner:
        s = owner[u]
        what = "attention module" if s.kind == "heads" else "gated MLP"
        raise ShrinkNetError(f"units: module {u!r} is a projection of {what} {s.name!r}, whose units span several "
                             f"projections; name {s.name!r} instead")
    if not _is_unit_type(mods[u]):
        raise ShrinkNetError(f"units: module {u!r} is a {type(mods[u]).__name__}; expected nn.Linear or nn.Conv2d "
                             f"(or Hugging Face Conv1D) for its output features, an attention module for its heads, "
                             f"or a gated MLP for its neurons")
    if u not in counts:
        raise ShrinkNetError(f"units: module {u!r} is never called in the model's forward pass")
    if _feeds_output(u, calls, out):
        raise ShrinkNetError(f"units: module {u!r} produces the model's output; its units are "
                             f"outputs, not hidden neurons")
    return u


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


def rows_per_pass(model, x, calls=None) -> int:
    """Samples per forward pass so that all layers' outputs together stay within ACTIVATION_BUDGET
    (``calls``: a trace of model on one sample x, where the caller has one)."""
    calls = _trace(model, x)[0] if calls is None else calls
    per_sample = sum(o.numel() for *_, o in calls if isinstance(o, torch.Tensor))
    return int(max(16, min(BATCH, ACTIVATION_BUDGET // max(1, per_sample))))


def downstream_sizes(calls, units) -> list[int]:
    """Per unit group: the activation values per sample from its gate on (the gated module's output,
    everything after it) in a trace of one sample, i.e. what one candidate's copy costs when the
    oracle batches candidates and computes the rest once. Module outputs only: a model's functional
    operations (attention scores, say) are not seen."""
    sizes = [o.numel() if isinstance(o, torch.Tensor) else 0 for *_, o in calls]
    first = {}
    for k, (n, *_) in enumerate(calls):
        first.setdefault(n, k)
    return [int(sum(sizes[first.get(u.gate_at, 0):])) for u in units]


def _unit_names(mods):
    return [n for n, m in mods.items() if _is_unit_type(m)]


def _feeds_output(name, calls, out) -> bool:
    for n, m, i, o in calls:
        if n == name:
            return _chain_end(calls, n, o)[1] is out
    return False


def _chain_end(calls, name, out):
    """Follow `out` through a directly consuming BatchNorm, then a directly consuming activation."""
    chain, cur = [name], out
    for test in (lambda m: isinstance(m, NORM_TYPES), _is_act):
        for n, m, i, o in calls:
            if i is cur and test(m) and n not in chain:
                chain.append(n)
                cur = o
                break
    return chain, cur


def _unit(name, calls) -> Unit:
    _, mod, _, out = next(c for c in calls if c[0] == name)
    chain, _ = _chain_end(calls, name, out)
    kind = "conv2d" if isinstance(mod, nn.Conv2d) else "linear"
    size = mod.out_channels if kind == "conv2d" else blocks.n_out(mod)
    return Unit(name, kind, int(size), chain[-1], tuple(chain))


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
        self.units = find_units(self.model, x, units)
        _check_batch_first(self.model, x, self.units)
        calls, _ = _trace(self.model, x)
        self.batch_rows = rows_per_pass(self.model, x, calls)
        self.downstream = downstream_sizes(calls, self.units)
        dev = batch.leaves(x)[0].device
        for l, u in enumerate(self.units):
            self.register_buffer(f"gate{l}", torch.ones(u.size, dtype=dt, device=dev))
        self._finish()

    def _finish(self):
        self._override: dict[int, torch.Tensor] = {}
        self._residual: dict = {}      # group -> (mean, M) while compensation.compensating is on
        self._plans = None            # per unit, its consumers' input indices (fan_out), made on first use
        self._handles = []
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            if u.on_input:
                self._handles.append(mods[u.gate_at].register_forward_pre_hook(self._make_pre_hook(l)))
            else:
                self._handles.append(mods[u.gate_at].register_forward_hook(self._make_hook(l)))

    def _gate(self, l: int) -> torch.Tensor:
        g = self._override.get(l)
        return self._buffers[f"gate{l}"] if g is None else g

    def _make_hook(self, l: int):
        dim = self.units[l].channel_dim

        def hook(module, inputs, out):
            g = self._gate(l)
            # gate (K,) or per-sample (B, K), broadcast along the unit's channel dimension
            ones = [1] * (out.ndim - 2)
            if dim == 1:                  # out (B, K, H, W): (K, 1, 1) or (B, K, 1, 1)
                g = g.reshape(*g.shape, *ones)
            elif g.ndim == 2:             # out (B, ..., K): (B, 1.., K)
                g = g.reshape(g.shape[0], *ones, g.shape[1])
            return out * g
        return hook

    def _make_pre_hook(self, l: int):
        block = self.units[l].block

        def hook(module, args):
            x, g = args[0], self._gate(l)
            # each unit owns `block` consecutive input columns (a head: head_dim of them per query head)
            if block > 1:
                g = g.repeat_interleave(block, dim=-1)
            if g.ndim == 2:               # per-sample rows: (B, 1.., D)
                g = g.reshape(g.shape[0], *([1] * (x.ndim - 2)), g.shape[1])
            res = self._residual.get(l)
            if res is None:
                return (x * g, *args[1:])
            mean, M = res                 # compensated: a gate moves the columns by their residual r
            r = x - mean if M is None else x @ M[:-1] + M[-1]
            return (x - (1 - g) * r, *args[1:])
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

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The wrapped model's output (logits) with the gates: ``gm(X)`` with X a tensor, tuple or dict,
        or as the model itself is called, ``gm(a, b)`` / ``gm(input_ids=...)``."""
        if kwargs and args:
            raise ShrinkNetError("GatedModel: expected positional or keyword inputs, got both")
        X = dict(kwargs) if kwargs else (args[0] if len(args) == 1 else tuple(args))
        with plain_attention():
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

    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """Per group: sum_n o dE/do (= g dE/dg) and, with second, the Gauss-Newton estimate of
        sum_n o^2 d2E/do^2 (= g^2 sum_n J^T H J, J = dz/dg per sample), by autograd; with the
        context's compensation (where ``compensated``), along the compensated removal."""
        with compensation.compensating(ctx) if compensated else contextlib.nullcontext():
            grads, gns = derivatives.gauss_newton(self, ctx.chunks(self.batch_rows), ctx.loss, second)
        return [g * d for g, d in zip(self.gates, grads)], [g * g * h for g, h in zip(self.gates, gns)]

    @torch.no_grad()
    def unit_outputs(self, ctx):
        """Yield (group, un-gated output of its units on a batch) over all of ctx.X; a transformer
        unit's output is its block of the consumer's input, as (..., K, block)."""
        got, handles = [], []
        mods = dict(self.model.named_modules())
        for l, u in enumerate(self.units):
            # registered before the gate hook, so it sees the un-gated output
            if u.on_input:
                handles.append(mods[u.gate_at].register_forward_pre_hook(
                    lambda m, a, l=l, u=u: got.append((l, a[0].detach().unflatten(-1, (u.size, u.block)))),
                    prepend=True))
            else:
                handles.append(mods[u.gate_at].register_forward_hook(
                    lambda m, i, o, l=l: got.append((l, o.detach())), prepend=True))
        try:
            for Xb, _ in ctx.chunks(self.batch_rows):
                got.clear()
                self(Xb)
                yield from list(got)
        finally:
            for h in handles:
                h.remove()

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
                if u.site is not None:
                    self._plans.append([{u.site.consumer: list(range(u.site.columns(j).start, u.site.columns(j).stop))}
                                        for j in range(u.size)])
                    continue
                if graph is None:
                    graph = dependency_graph(m, self.example)
                self._plans.append([group_of(graph, m, u, [j]) for j in range(u.size)])
        return self._plans

    def fan_in(self, layer: int) -> torch.Tensor:
        """(K, M): each unit's incoming weights (Linear row / Conv2d filter; a transformer unit's rows of
        its projections), inputs fed by removed units zeroed."""
        u = self.units[layer]
        if u.site is not None:
            return blocks.fan_in(u.site, dict(self.model.named_modules()))
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
        if u.site is not None:
            return blocks.fan_out(u.site, dict(self.model.named_modules()))
        own = {u.name: k for k, u in enumerate(self.units) if u.site is None}
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


def _check_batch_first(model: nn.Module, x, units) -> None:
    """Per-sample gate rows (the oracle's candidates, the per-sample derivatives) scale dim 0 of the
    gated tensor: refuse, by name, a unit whose tensor does not carry the samples there (e.g. inside
    ``nn.TransformerEncoder(batch_first=False)``, where a layer sees (positions, samples, features))."""
    mods, seen, handles = dict(model.named_modules()), {}, []
    def note(name, t):
        seen.setdefault(name, tuple(t.shape))          # (a hook returning a value would replace the tensors)

    for u in units:
        mod = mods[u.gate_at]
        if u.on_input:
            handles.append(mod.register_forward_pre_hook(lambda m, a, u=u: note(u.name, a[0])))
        else:
            handles.append(mod.register_forward_hook(lambda m, a, o, u=u: note(u.name, o)))
    try:
        with torch.no_grad(), plain_attention():
            batch.call(model, batch.repeat(x, 3))
    except Exception:
        return                                         # a model of one fixed batch size: nothing to check
    finally:
        for h in handles:
            h.remove()
    for u in units:
        shape = seen.get(u.name)
        if shape is not None and shape[0] != 3:
            raise ShrinkNetError(f"units: the tensor that module {u.gate_at!r} sees for units of {u.name!r} has shape "
                                 f"{tuple(shape)} for 3 samples; expected the samples on dim 0 (a batch-first "
                                 f"layout, e.g. nn.TransformerEncoder(..., batch_first=True))")


def _replace_torch_attention(model: nn.Module) -> None:
    """nn.MultiheadAttention computes its output projection through a functional call that no hook
    sees, with heads tied to its width: swap in the equivalent module whose heads can be gated."""
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        from .attention import replace_torch_attention
        replace_torch_attention(model)


__all__ = ["Gated", "GatedModel", "Unit", "find_units", "plain_attention", "rows_per_pass"]
