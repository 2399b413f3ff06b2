"""Which units a model has: one trace of a forward pass, read for the modules that produce units.

A unit group is the output features of an ``nn.Linear`` (or Hugging Face ``Conv1D``), the output
channels of an ``nn.Conv2d``, a transformer structure (FFN neurons, attention heads) or a whole
sublayer: one of the unit kinds of :mod:`shrinknet.units`. :func:`traced_units` runs the model once on
one sample, records every leaf module call in order, and resolves the user's ``units`` against it: the
kinds answer the selectors ("heads", "ffn", "blocks") and say which group a name is and where its gate
sits; this module checks names, picks the default and orders the groups. The same trace sizes the
passes (:func:`rows_per_pass`, :func:`downstream_sizes`).
"""
from __future__ import annotations

import contextlib
import copy as _copy

import torch
from torch import nn

from . import blocks
from . import inputs as batch
from ._validation import ShrinkNetError
from .dependency import UNIT_TYPES, dependency_graph, group_of
from .units import KINDS, Trace, Unit, kind_of
from .units.ffn import weight_in  # noqa: F401  (its older place)
from .units.linear import ACT_TYPES, NORM_TYPES, chain_end as _chain_end  # noqa: F401
from .units.linear import is_unit_type as _is_unit_type

#: what ``units=None`` picks in a transformer (a model with a supported attention module or gated MLP)
TRANSFORMER_DEFAULT = "ffn"
#: activation values (summed over all layers) one forward pass may hold: sets the rows per pass. Small
#: enough that big tensors are not handed back to the OS after every pass (which made a CNN's taylor2
#: several times slower; docs/PERFORMANCE.md), large enough for few passes on MLPs.
ACTIVATION_BUDGET = 1 << 24
#: fallback / ceiling of samples per forward pass
BATCH = 16384


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
    :mod:`shrinknet.units.sublayer`), not together with other units."""
    heads, gated, unknown = blocks.find_sites(model)
    calls, out = _trace(model, example_input)
    trace = Trace(model, calls, out, heads, gated, unknown)
    mods, counts = trace.mods, trace.counts
    sites_by_name = {s.name: s for s in [*heads, *gated]}
    owner = {r.name: s for s in [*heads, *gated] for r in s.producers} | {s.consumer: s for s in [*heads, *gated]}
    kinds = list(KINDS.values())
    if units is None:
        if trace.transformer:
            chosen = _selected(TRANSFORMER_DEFAULT, trace, kinds)
        else:
            cand = [n for n, m, _, _ in calls if _is_unit_type(m)]
            chosen = list(dict.fromkeys(cand[:-1]))   # the last Linear/Conv2d called produces the output
            chosen = _independent(model, example_input, [_resolve(n, trace, kinds) for n in chosen])
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
            elif isinstance(u, str) and any(u in k.selectors for k in kinds):      # "ffn", "heads", "blocks"
                chosen += _selected(u, trace, kinds)
            elif isinstance(u, str) and any(k.claims(u) for k in kinds):         # e.g. "<module>:sublayer"
                chosen.append(next(k for k in kinds if k.claims(u)).check_name(u, trace))
            elif isinstance(u, str):
                chosen.append(_check_name(u, mods, counts, calls, out, sites_by_name, owner, unknown))
            else:
                raise ShrinkNetError(f"units: expected module names (str), 'heads' or types, got {u!r}")
        chosen = list(dict.fromkeys(chosen))
    found = [_resolve(n, trace, kinds) for n in chosen]
    if units is not None:
        for k in kinds:
            k.check_together(found)
    if not chosen:
        raise ShrinkNetError("units: expected at least one nn.Linear, nn.Conv2d or transformer block with hidden "
                             "units, got none")
    for u in found:
        if counts.get(u.gate_at, 0) != 1:
            raise ShrinkNetError(f"units: module {u.gate_at!r} is called {counts.get(u.gate_at, 0)} times in one "
                                 f"forward pass; expected once (shared layers cannot be gated per use)")
    order = {n: i for i, (n, *_) in reversed(list(enumerate(calls)))}
    return sorted(found, key=lambda u: order.get(kind_of(u).first_module(u), 0)), calls


def _selected(selector: str, trace, kinds) -> list[str]:
    """The groups ``selector`` picks: those of every kind that answers it, in the kinds' order."""
    return [n for k in kinds if selector in k.selectors for n in k.select(selector, trace)]


def _resolve(name: str, trace, kinds) -> Unit:
    """The :class:`Unit` record of group ``name``: from the first kind that knows it."""
    for k in kinds:
        u = k.unit(name, trace)
        if u is not None:
            return u
    raise ShrinkNetError(f"units: module {name!r} is no unit group of a known kind ({', '.join(KINDS)})")


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
        what = KINDS[s.kind].noun
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
