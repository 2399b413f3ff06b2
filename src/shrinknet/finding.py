"""Which units a model has: one trace of a forward pass, read for the modules that produce units.

A unit group is the output features of an ``nn.Linear`` (or Hugging Face ``Conv1D``), the output
channels of an ``nn.Conv2d``, or a transformer structure (:mod:`shrinknet.blocks`: FFN neurons, attention
heads). :func:`traced_units` runs the model once on one sample, records every leaf module call in
order, and resolves the user's ``units`` against it: where each group's gate sits (after a directly
consuming BatchNorm and activation module), which Linear pairs are a transformer's FFN, which layer
produces the output. The same trace sizes the passes (:func:`rows_per_pass`, :func:`downstream_sizes`).
"""
from __future__ import annotations

import contextlib
import copy as _copy
from dataclasses import dataclass

import torch
from torch import nn

from . import blocks
from . import inputs as batch
from . import sublayers
from ._validation import ShrinkNetError
from .dependency import UNIT_TYPES, dependency_graph, group_of

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
    structure (FFN neurons, attention heads) described by ``site``, or one whole transformer sublayer
    (one unit) described by ``branch``."""
    name: str            # the producing module, or the attention / gated-MLP module (its name in named_modules());
                         # a sublayer: its module's name + ":sublayer"
    kind: str            # "linear", "conv2d", a site's kind ("ffn", "gated-ffn", "heads"), or "sublayer"
    size: int            # number of units
    gate_at: str         # the module whose output (or, for a site, whose input) the gate multiplies
    chain: tuple         # producer, then the BatchNorm / activation modules that belong to it
    site: blocks.Site | None = None
    branch: sublayers.Branch | None = None    # a whole transformer sublayer (kind "sublayer", one unit)

    @property
    def on_input(self) -> bool:
        """Whether the gate multiplies ``gate_at``'s input (a block of columns per unit) rather than its output."""
        return self.site is not None

    @property
    def block(self) -> int:
        if self.branch is not None:
            return self.branch.dim     # a sublayer's output: the whole residual width
        return self.site.block if self.site is not None else 1

    @property
    def channel_dim(self) -> int:
        if self.site is not None or self.branch is not None:
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
    """Resolve ``units`` to :class:`Unit` records, in execution order (see :func:`traced_units`)."""
    return traced_units(model, example_input, units)[0]


def traced_units(model: nn.Module, example_input, units=None):
    """(:class:`Unit` records in execution order, the trace of one forward pass they were found in).

    ``units``: None, or a list of module names, module types (nn.Linear, nn.Conv2d) and the strings
    "heads" and "ffn". None (or "ffn") picks, in a transformer (a model with a supported attention
    module), the FFN neurons of every block; in any other model None picks every Linear / Conv2d
    except the one that produces the output. A name may be a Linear / Conv2d / Conv1D (its output
    features), an attention module (its heads) or a gated MLP (its neurons); "heads" selects every
    supported attention module; "blocks" every transformer sublayer (attention and MLP, one unit each,
    :mod:`shrinknet.sublayers`), not together with other units."""
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
    branches = {b.name: b for b in sublayers.find(calls, heads, gated, {n: pairs[n] for n in ffn})}
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
            elif u == sublayers.SELECTOR:
                if not branches:
                    raise ShrinkNetError("units: 'blocks' selects a transformer's attention and MLP sublayers, but the "
                                         "model has no supported attention module or gated MLP")
                chosen += list(branches)
            elif sublayers.is_name(u):
                if u not in branches:
                    raise ShrinkNetError(f"units: no sublayer named {u!r} (sublayers: "
                                         f"{', '.join(list(branches)[:6]) or 'none'}{', ...' if len(branches) > 6 else ''})")
                chosen.append(u)
            elif isinstance(u, str):
                chosen.append(_check_name(u, mods, counts, calls, out, sites_by_name, owner, unknown))
            else:
                raise ShrinkNetError(f"units: expected module names (str), 'heads' or types, got {u!r}")
        chosen = list(dict.fromkeys(chosen))
        whole = [n for n in chosen if n in branches]
        if whole and len(whole) < len(chosen):
            other = next(n for n in chosen if n not in branches)
            raise ShrinkNetError(f"units: whole sublayers ('blocks', e.g. {whole[0]!r}) cannot be pruned together with "
                                 f"other units (e.g. {other!r}) in one run; expected 'blocks' alone, or heads / FFN "
                                 f"neurons / layers without it")
    if not chosen:
        raise ShrinkNetError("units: expected at least one nn.Linear, nn.Conv2d or transformer block with hidden "
                             "units, got none")
    found = []
    for n in chosen:
        if n in branches:
            b = branches[n]
            found.append(Unit(n, "sublayer", 1, b.gate_at, (b.gate_at,), None, b))
            continue
        s = sites_by_name.get(n)
        if s is None and n in pairs:
            s = blocks.ffn_site(n, mods[n], pairs[n])
        found.append(_unit(n, calls) if s is None else Unit(n, s.kind, s.size, s.consumer, (n,), s))
    for u in found:
        if counts.get(u.gate_at, 0) != 1:
            raise ShrinkNetError(f"units: module {u.gate_at!r} is called {counts.get(u.gate_at, 0)} times in one "
                                 f"forward pass; expected once (shared layers cannot be gated per use)")
    order = {n: i for i, (n, *_) in reversed(list(enumerate(calls)))}
    first = (lambda u: u.branch.gate_at if u.branch else u.site.producers[0].name if u.site else u.name)
    return sorted(found, key=lambda u: order.get(first(u), 0)), calls


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
                             f"implementation (supported: {blocks.supported_attention()})")
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


__all__ = ["ACT_TYPES", "NORM_TYPES", "Unit", "downstream_sizes", "find_units", "plain_attention", "rows_per_pass",
           "traced_units"]
