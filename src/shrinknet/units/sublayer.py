"""Whole transformer sublayers as units (``units=["blocks"]``): depth pruning, one residual branch at a time.

A transformer layer adds two *branches* to its residual stream: the attention sublayer's and the MLP
sublayer's. This module says everything about them as units:

* **found** structurally, from what :mod:`shrinknet.blocks` and the trace already know: an attention
  site's branch ends in its output projection (``o_proj``, BERT's ``attention.output.dense``, GPT-2's
  ``attn.c_proj``), a gated MLP's in ``down_proj``, a plain FFN pair's in its second projection. So
  pre-LN blocks (LLaMA, GPT-2, ViT: the branch is ``self_attn`` / ``mlp``) and post-LN blocks (BERT:
  the branch is the projection's output *before* the residual add and LayerNorm) are one case;
* **gated** by one scalar per branch multiplying the output of that last projection (a forward hook;
  per-sample rows ``(B, 1)`` for the oracle and the derivatives): ``g * out + (1 - g) * fill``, where
  ``fill`` is 0, or the branch's mean output after a removal with ``compensation="mean"``;
* **cut** by replacing the branch's modules by :class:`Removed` stubs (no parameters): the module that
  computes the attention (for BERT its ``self``, and then the ``output.dense`` that follows it), the
  gated MLP, or both projections of a plain FFN. The last stub returns the constant ``fill``
  broadcast over the samples and positions, in the output structure the branch returned (a tensor,
  or a tuple whose first element is the tensor and the rest None). BERT's LayerNorm after the sum
  stays, so a shrunk model computes what the gated one does with gate 0;
* **saved** as a list of stubs in a model file's metadata (:func:`stubs`, :func:`restore`);
* **costed** by measuring its cut (what :func:`shrinknet.unit_costs` gives); :func:`cost` counts the
  parameters and the FLOPs per sample of its projections alone.

A group is **one sublayer** (one unit, named ``"<module>:sublayer"``, e.g.
``"model.layers.0.self_attn:sublayer"``): the gate hooks, the per-group statistics the criteria read,
``shrink``'s ``{name: kept}`` and a result's ``keep_by_name()`` then work as for any other group of one
unit, and removing every group still leaves a model that runs (embeddings, LayerNorms and the head).

Criteria that read weights or activation shapes per output unit mean nothing for a whole branch and
are refused by name (:data:`REFUSED`); those that act through the gate (brute-force, the Taylor and
Fisher estimates, random) and the statistics of the branch's output (mean-activation,
activation-variance) work. :class:`SublayerKind` is the unit kind (:mod:`shrinknet.units`); the older
module name ``shrinknet.sublayers`` still imports all of this.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from .. import blocks
from .. import inputs as batch
from .._validation import ShrinkNetError
from .base import Trace, Unit, UnitKind
from .ffn import in_blocks            # (the plain FFNs of the blocks: the FFN kind finds them)

#: how a sublayer group's name ends (after the module that holds the branch)
SUFFIX = ":sublayer"
#: the selector of every sublayer in ``units``
SELECTOR = "blocks"
#: criteria refused for sublayers, and why
REFUSED = {
    "l1-in": "a branch has no incoming weights of its own (every projection reads the whole residual stream)",
    "l2-in": "a branch has no incoming weights of its own (every projection reads the whole residual stream)",
    "l1-out": "a branch's output is not a unit's column of one consumer (it is added to the residual stream)",
    "l2-out": "a branch's output is not a unit's column of one consumer (it is added to the residual stream)",
    "apoz": "a branch's output is never exactly zero (no ReLU at its end): its share of zeros says nothing",
}


@dataclass(frozen=True)
class Branch:
    """One residual branch of a transformer layer."""
    kind: str          # "attention" or "mlp"
    name: str          # the unit group's name: the module that holds the branch, plus SUFFIX
    gate_at: str       # the module whose output is the branch's output (its last projection)
    dim: int           # that output's width (the residual stream's)
    replace: tuple     # the modules a removal replaces by stubs, in call order; the last gives the output


def is_name(name) -> bool:
    return isinstance(name, str) and name.endswith(SUFFIX)


def find(calls, heads, gated, pairs: dict) -> list[Branch]:
    """Every branch of the model, in call order: ``calls`` is a trace of one forward pass (name, module,
    input, output) of its leaf modules; ``heads`` / ``gated`` the sites of :func:`blocks.find_sites`;
    ``pairs`` {producer: consumer} the plain FFNs inside the transformer layers."""
    width = {n: int(o.shape[-1]) for n, _, _, o in calls if isinstance(o, torch.Tensor)}
    order = {}
    for k, (n, *_) in enumerate(calls):
        order.setdefault(n, k)
    roots = blocks.block_roots(heads)
    found = []
    for s in heads:
        inner = s.heads["module"]
        inside = s.consumer.startswith(inner + ".") or inner == ""
        found.append(Branch("attention", s.name + SUFFIX, s.consumer, width.get(s.consumer, 0),
                            (inner,) if inside else (inner, s.consumer)))
    for s in gated:
        found.append(Branch("mlp", s.name + SUFFIX, s.consumer, width.get(s.consumer, 0), (s.name,)))
    for producer, consumer in pairs.items():
        parent = consumer.rpartition(".")[0]
        # the module holding the second projection names the sublayer (BERT's "output", GPT-2's "mlp"),
        # unless it is the whole transformer layer
        name = parent if parent and parent not in roots else producer
        found.append(Branch("mlp", name + SUFFIX, consumer, width.get(consumer, 0), (producer, consumer)))
    found = [b for b in found if b.gate_at in order and b.dim > 0]
    return sorted(found, key=lambda b: order[b.gate_at])


def refuse(criterion: str, model) -> None:
    """Raise, naming ``criterion``, where ``model``'s units are sublayers and the criterion means nothing
    for them (:data:`REFUSED`)."""
    why = REFUSED.get(criterion)
    if why is None:
        return
    names = [u.name for u in getattr(model, "units", []) if getattr(u, "branch", None) is not None]
    if names:
        raise ShrinkNetError(f"criterion: {criterion!r} scores a unit by its own weights or zeros, which a whole "
                             f"sublayer ({names[0]!r}) does not have: {why}; expected one that acts through the "
                             f"gate (brute-force and its approximations, the taylor1 / taylor2 family incl. taylor2-sampled, "
                             f"fisher, random, mean-activation, activation-variance)")


# ---- gating -------------------------------------------------------------------------------------
def gated(out: torch.Tensor, g: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """The branch's output ``out`` (B, ..., D) under gate ``g`` ((1,), or per-sample rows (B, 1)):
    ``g * out + (1 - g) * fill`` (``fill`` (D,): what a removed branch returns; None = 0)."""
    if g.ndim == 2:
        g = g.reshape(g.shape[0], *([1] * (out.ndim - 1)))
    return out * g if fill is None else out * g + (1 - g) * fill


# ---- cutting ------------------------------------------------------------------------------------
class Removed(nn.Module):
    """A removed branch's stand-in: no parameters; returns ``fill`` (a (dim,) buffer: 0, or the branch's
    mean output) broadcast over the samples and positions of its input, as a tensor (``outputs`` 0) or
    a tuple of ``outputs`` entries, the tensor first and None after it."""

    def __init__(self, dim: int, outputs: int = 0, fill: torch.Tensor | None = None, like: nn.Module | None = None):
        super().__init__()
        self.dim, self.outputs = int(dim), int(outputs)
        self.register_buffer("fill", torch.zeros(self.dim) if fill is None else fill.detach().clone().reshape(self.dim))
        # the replaced module's plain settings (batch_first, num_heads, ...): code around it may read them
        # (nn.TransformerEncoder asks its layers' self_attn before it runs them); its tensors read as None
        for name in dir(like) if like is not None else []:
            if name.startswith("__") or name in ("training", "dim", "outputs", "fill", "T_destination",
                                                  "call_super_init", "dump_patches"):
                continue
            try:
                v = getattr(like, name)
            except Exception:           # a property that needs state the stub has not
                continue
            if v is None or type(v) in (bool, int, float, str):
                object.__setattr__(self, name, v)
            elif isinstance(v, torch.Tensor):   # its weights are gone (and a fused path asking for them
                object.__setattr__(self, name, None)    # then takes the plain one, which calls the stub)

    def forward(self, *args, **kwargs):
        x = kwargs.get("hidden_states")
        if not isinstance(x, torch.Tensor):
            x = next((a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)), None)
        if x is None:
            raise ShrinkNetError("Removed: expected a tensor input (the hidden states), got none")
        y = self.fill.expand(*x.shape[:-1], self.dim).clone()
        return (y, *([None] * (self.outputs - 1))) if self.outputs else y

    def extra_repr(self) -> str:
        return f"dim={self.dim}, outputs={self.outputs}"


def _structures(model: nn.Module, names, example_input) -> dict:
    """{module: (outputs, width)} for the named modules, from one forward pass: ``outputs`` 0 for a
    tensor output, else the length of the tuple it returned; width the last dim of its tensor."""
    mods, seen, handles = dict(model.named_modules()), {}, []

    def note(name, o):
        t = o[0] if isinstance(o, tuple) else o
        seen.setdefault(name, (len(o) if isinstance(o, tuple) else 0, int(t.shape[-1])))
    for n in names:
        handles.append(mods[n].register_forward_hook(lambda m, a, o, n=n: note(n, o)))
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)     # torch's fused encoder path would skip the hooks
    try:
        with torch.no_grad():
            batch.call(model, example_input)
    finally:
        torch.backends.mha.set_fastpath_enabled(was)
        for h in handles:
            h.remove()
    return seen


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def cut(model: nn.Module, branch: Branch, example_input, fill: torch.Tensor | None = None) -> None:
    """Replace ``branch``'s modules in ``model`` (in place) by :class:`Removed` stubs; the last returns
    ``fill`` (None: 0). ``example_input``: a batch the model takes, to read each module's output structure."""
    found = _structures(model, branch.replace, example_input)
    mods = dict(model.named_modules())
    ref = next(iter(mods[branch.replace[-1]].parameters()), None)
    for k, name in enumerate(branch.replace):
        if name not in found:
            raise ShrinkNetError(f"shrink: module {name!r} of sublayer {branch.name!r} is never called")
        outputs, width = found[name]
        last = k == len(branch.replace) - 1
        stub = Removed(width, outputs, fill if last else None, like=mods[name])
        if ref is not None:
            stub = stub.to(dtype=ref.dtype, device=ref.device)
        _set(model, name, stub)


def stubs(model: nn.Module) -> dict:
    """{module name: {"dim", "outputs"}} of every :class:`Removed` stub in ``model`` (a file's metadata)."""
    return {n: {"dim": m.dim, "outputs": m.outputs} for n, m in model.named_modules() if isinstance(m, Removed)}


def restore(model: nn.Module, spec: dict, where: str) -> None:
    """Put the stubs :func:`stubs` described back into ``model`` (a template), checked; ``where`` names
    the file in errors."""
    if not isinstance(spec, dict):
        raise ShrinkNetError(f"{where}: expected its removed sublayers as a JSON object, got {type(spec).__name__}")
    mods = dict(model.named_modules())
    for name, s in spec.items():
        ok = isinstance(s, dict) and all(isinstance(s.get(k), int) and not isinstance(s.get(k), bool)
                                         for k in ("dim", "outputs"))
        if not ok or not 0 < s["dim"] <= 1 << 20 or not 0 <= s["outputs"] <= 16:
            raise ShrinkNetError(f"{where}: removed sublayer {name!r}: expected {{'dim': 1..2^20, 'outputs': 0..16}}, "
                                 f"got {s!r}")
        if not name or name not in mods:
            raise ShrinkNetError(f"{where}: removed sublayer {name!r} is not a module of the template")
        _set(model, name, Removed(s["dim"], s["outputs"], like=mods[name]))


# ---- cost -----------------------------------------------------------------------------------------
def cost(model: nn.Module, branch: Branch, example_input) -> dict:
    """What removing ``branch`` saves: {"params": its parameters, "flops": multiply-adds x 2 per sample of
    its linear projections at ``example_input``'s shape (attention scores, computed by functions, not
    counted)}."""
    mods = dict(model.named_modules())
    params = {id(p): p.numel() for n in branch.replace for p in mods[n].parameters()}
    dense = {f"{n}.{c}" if c else n: m for n in branch.replace for c, m in mods[n].named_modules() if blocks.is_dense(m)}
    flops, handles = [0], []
    for m in dense.values():
        handles.append(m.register_forward_hook(
            lambda mod, a, o: flops.__setitem__(0, flops[0] + 2 * o.numel() * blocks.weight_oi(mod).shape[1])))
    x = batch.take(example_input, slice(0, 1))
    try:
        with torch.no_grad():
            batch.call(model, x)
    finally:
        for h in handles:
            h.remove()
    return {"params": int(sum(params.values())), "flops": int(flops[0])}


# ---- the unit kind ---------------------------------------------------------------------------------
#: the metadata key of a model file's removed sublayers (their stubs)
META = "removed_sublayers"


def branches(trace: Trace) -> dict[str, Branch]:
    """{group name: Branch} of every sublayer of the traced model, in call order."""
    return trace.cached("sublayers", lambda: {b.name: b for b in find(trace.calls, trace.heads, trace.gated,
                                                                           in_blocks(trace))})


class SublayerKind(UnitKind):
    """Whole transformer sublayers, one unit each (see the module's docstring)."""
    name = "sublayer"
    noun = "sublayer"
    selectors = (SELECTOR,)
    may_empty = True

    # ---- found
    def claims(self, name) -> bool:
        return is_name(name)

    def check_name(self, name, trace):
        found = branches(trace)
        if name not in found:
            raise ShrinkNetError(f"units: no sublayer named {name!r} (sublayers: "
                                 f"{', '.join(list(found)[:6]) or 'none'}{', ...' if len(found) > 6 else ''})")
        return name

    def select(self, selector, trace):
        found = branches(trace)
        if not found:
            raise ShrinkNetError("units: 'blocks' selects a transformer's attention and MLP sublayers, but the "
                                 "model has no supported attention module or gated MLP")
        return list(found)

    def unit(self, name, trace) -> Unit | None:
        b = branches(trace).get(name) if is_name(name) else None
        return None if b is None else Unit(name, self.name, 1, b.gate_at, (b.gate_at,), None, b)

    def check_together(self, units) -> None:
        whole = [u.name for u in units if u.kind == self.name]
        if whole and len(whole) < len(units):
            other = next(u.name for u in units if u.kind != self.name)
            raise ShrinkNetError(f"units: whole sublayers ('blocks', e.g. {whole[0]!r}) cannot be pruned together with "
                                 f"other units (e.g. {other!r}) in one run; expected 'blocks' alone, or heads / FFN "
                                 f"neurons / layers without it")

    def first_module(self, unit) -> str:
        return unit.branch.gate_at

    # ---- gated
    def block(self, unit) -> int:
        return unit.branch.dim     # a sublayer's output: the whole residual width

    def channel_dim(self, unit) -> int:
        return -2                  # unit outputs are read as (..., 1, D)

    def fill_size(self, unit) -> int:
        return unit.branch.dim     # what the removed sublayer returns: 0, or its mean (compensation)

    def gate(self, unit, out, g, residual=None, fill=None):
        if residual is not None:   # compensated: the mean of an active branch (0 once removed, when
            fill = fill + residual[0]   # its own fill holds what it returns; an active one's fill is 0)
        return gated(out, g, fill)

    def observe(self, unit, out):
        return out.unsqueeze(-2)   # its branch's output, as (..., 1, D)

    def plan(self, unit):
        return [{}]                # a sublayer feeds the residual stream, no one consumer

    def fan_in(self, unit, mods):
        self._no_fan(unit, "fan_in")

    def fan_out(self, unit, mods):
        self._no_fan(unit, "fan_out")

    @staticmethod
    def _no_fan(unit, what: str) -> None:
        raise ShrinkNetError(f"{what}: {unit.name!r} is a whole sublayer, whose branch reads and feeds the whole "
                             f"residual stream; it has no incoming / outgoing weights of its own")

    # ---- cut, saved
    def cut(self, model, unit, kept, *, graph=None, example_input=None, fill=None) -> None:
        cut(model, unit.branch, example_input, fill)

    def save_meta(self, model) -> dict:
        removed = stubs(model)
        return {META: removed} if removed else {}

    def load_meta(self, model, meta, where) -> None:
        restore(model, json.loads(meta.get(META, "{}")), where)


SUBLAYER = SublayerKind()

__all__ = ["META", "REFUSED", "SELECTOR", "SUBLAYER", "SUFFIX", "Branch", "Removed", "SublayerKind", "branches", "cost",
           "cut", "find", "gated", "is_name", "refuse", "restore", "stubs"]
