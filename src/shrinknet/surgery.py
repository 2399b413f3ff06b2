"""Physical removal: a new, smaller model in which the removed units no longer exist.

The producing layer loses rows (Linear) or output channels (Conv2d), its BatchNorm loses the same
channels, and every consumer loses the matching inputs (a Linear after a flatten loses each removed
channel's H x W block of columns). The dependency graph is Torch-Pruning's DepGraph (Fang et al.
2023), built by tracing one forward pass; this module only decides which groups it may prune and
checks the result against the gated model.

A unit can be removed on its own only if nothing else must shrink with it: when its channels are
added to other layers' channels (a residual connection), normalised together with other features
(LayerNorm), or fed to a depthwise convolution, the error names the module it is coupled to.

    >>> small = shrink(model, {"conv1": [0, 2, 3], "fc1": range(50)}, example_input=X[:1])
    >>> small = shrink(model, result)          # keep = the units a PruneResult left active
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from . import inputs as batch
from ._validation import HALF, ShrinkNetError, check_materialized, strip_compiled, unwrap_compiled
from .dependency import dependency_graph
from .finding import find_units, plain_attention
from .gating import Gated, GatedModel, _replace_torch_attention, restore_training, training_flags
from .models import as_sequential
from .results import Keep, PruneResult
from .saving import layer_shapes
from .units import kind_of

#: relative tolerance of the check that the shrunk model computes what the gated one does
CHECK_RTOL = 1e-4


def _coerce_keep(keep, names_by_index):
    """``keep`` keyed by module name: a PruneResult's final keep, or a dict keyed by name or by unit
    group index (``result.keep()``: its own names, else ``names_by_index``)."""
    if isinstance(keep, PruneResult):
        return keep.keep_by_name()
    if not isinstance(keep, dict) or not keep:
        raise ShrinkNetError(f"keep: expected a non-empty dict {{module name: indices to keep}} or a PruneResult, "
                             f"got {type(keep).__name__}")
    if isinstance(keep, Keep) and names_by_index is None:
        names_by_index = keep.names
    out = {}
    for k, v in keep.items():
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and names_by_index is not None:
            if not 0 <= k < len(names_by_index):
                raise ShrinkNetError(f"keep: layer index {k} out of range (0..{len(names_by_index) - 1})")
            k = names_by_index[int(k)]
        out[str(k)] = v
    return out


def _indices(v, size: int, name: str, empty_ok: bool = False) -> list[int]:
    try:
        idx = np.asarray(list(v) if not isinstance(v, (np.ndarray, torch.Tensor)) else v).astype(np.int64).ravel()
    except (TypeError, ValueError):
        raise ShrinkNetError(f"keep[{name!r}]: expected integer indices, got {v!r}") from None
    if idx.size == 0 and empty_ok:
        return []
    if idx.size == 0:
        raise ShrinkNetError(f"keep[{name!r}]: expected at least one unit to keep (removing all {size} would "
                             f"disconnect the network), got none")
    if idx.min() < 0 or idx.max() >= size or len(set(idx.tolist())) != idx.size:
        raise ShrinkNetError(f"keep[{name!r}]: expected distinct indices in [0, {size}), got {idx.tolist()[:10]}...")
    return sorted(idx.tolist())


def shrink_mlp(model, keep):
    """A smaller MLP: hidden layer l keeps the units ``keep["layers.l"]`` (or ``keep[l]``, or the name of
    the Linear layer it came from where the MLP was read from an nn.Sequential)."""
    names = [f"layers.{l}" for l in range(model.n_hidden_layers)]
    alias = dict(zip(model.unit_names, names))
    keep = _coerce_keep(keep.keep() if isinstance(keep, PruneResult) else keep, names)
    keep = {alias.get(k, k): v for k, v in keep.items()}
    for k in keep:
        if k not in names:
            raise ShrinkNetError(f"keep: {k!r} is not a hidden layer of this MLP: expected one of {', '.join(names)}")
    rows = [_indices(keep[n], k, n) if n in keep else list(range(k)) for n, k in zip(names, model.hidden_sizes)]
    Ws, bs = model.to_numpy()
    gates = [g.detach().cpu().numpy() for g in model.gates]
    for l, r in enumerate(rows):
        Ws[l], bs[l] = Ws[l][r], bs[l][r]
        Ws[l + 1] = Ws[l + 1][:, r] * gates[l][r]      # gains other than 0/1 fold into the next layer
    out = type(model).from_numpy(Ws, bs, model.hidden_activation, model.output_activation,
                                 dtype=model.layers[0].weight.dtype)
    if "_sequential" in model.__dict__:           # read from the user's nn.Sequential: give one back
        out.__dict__["_sequential"] = model._sequential
        return as_sequential(out.to(model.layers[0].weight.device))
    return out.to(model.layers[0].weight.device)


def shrink(model, keep=None, example_input=None, *, check: bool = True) -> nn.Module:
    """A new, physically smaller copy of ``model`` that keeps only the listed units.

    Parameters
    ----------
    model : nn.Module, GatedModel or MLP
        Not modified. A GatedModel gives its bare model (its gates only supply the default `keep`).
    keep : dict or PruneResult
        {module name: indices of its output units (Linear features / Conv2d channels, heads, FFN
        neurons) to keep}; modules not named keep all their units. A PruneResult stands for the units
        it left active; ``result.keep()`` (keyed by unit group index) and ``result.keep_by_name()`` do
        too. In a dict keyed by index made by hand, group l is the l-th of the model's default unit
        groups (those ``prune`` takes with ``units=None``).
    example_input : tensor, optional
        A batch the model accepts, to trace it (one sample is enough). Taken from the GatedModel or
        PruneResult when not given.
    check : bool
        Compare the shrunk model's output with the gated model's on seeded random inputs and raise,
        naming the units, if they differ.

    Returns
    -------
    nn.Module of the model's own class (an MLP for an MLP; the ``nn.Sequential`` an MLP was read from
    for a result's model pruned on the MLP path), each submodule in its own train / eval mode, in
    the model's dtype (a bfloat16 / float16 model stays so; the check compares in float32). A ``torch.compile``'d
    model gives the smaller module it wrapped (compile that again). The layers it resized, with their
    shapes before, are in the new model's ``shrinknet_resized`` (what :func:`shrinknet.save_model`
    records, so that loading refuses a template other than the original architecture).
    """
    if isinstance(keep, PruneResult) and keep.compensation != "none" and model is not keep.model:
        raise ShrinkNetError(f"model: this result removed units with compensation {keep.compensation!r}, which refit "
                             f"weights this model does not have; expected the result's own model: "
                             f"shrink(result.model, result)")
    if isinstance(model, nn.Module):
        model = unwrap_compiled(model)
        check_materialized(model)
    with torch.inference_mode(False), torch.enable_grad():      # tracing the graph needs autograd
        if isinstance(model, Gated):
            if isinstance(keep, PruneResult) and list(keep.hidden_sizes) != list(model.hidden_sizes):
                raise ShrinkNetError(f"model: its unit groups have sizes {model.hidden_sizes}, but the result was pruned "
                                     f"on sizes {list(keep.hidden_sizes)}; expected the model the result came from")
            if keep is None:
                keep = {n: np.flatnonzero(g.detach().cpu().numpy() != 0) for n, g in zip(model.unit_names, model.gates)}
            if not isinstance(model, GatedModel):       # the MLP: its own layers, sliced
                return shrink_mlp(model, keep)
            if example_input is None:
                example_input = model.example
            return shrink_module(model.bare_copy(), _coerce_keep(keep, model.unit_names), example_input, check=check,
                                 fills=model.fills())
        if keep is None:
            raise ShrinkNetError("keep: expected {module name: indices to keep} or a PruneResult, got None")
        if not isinstance(model, nn.Module):
            raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
        if example_input is None:
            kept = getattr(keep, "model", None) if isinstance(keep, PruneResult) else None
            if isinstance(kept, GatedModel):
                example_input = kept.example
            elif isinstance(keep, PruneResult) and keep.input_shape is not None:
                example_input = torch.zeros(1, *keep.input_shape)
            elif isinstance(keep, Keep) and keep.example is not None:
                example_input = keep.example
            else:
                raise ShrinkNetError("example_input: expected a batch the model accepts (a tensor, or a tuple or dict "
                                     "of tensors; one sample is enough) to trace its layers, got None")
        sizes = dict(zip(keep.unit_names, keep.hidden_sizes)) if isinstance(keep, PruneResult) else None
        return shrink_module(model, keep, example_input, check=check, sizes=sizes)


def shrink_module(model: nn.Module, keep, example_input, *, check: bool = True, sizes: dict | None = None,
                  fills: dict | None = None) -> nn.Module:
    """:func:`shrink` for a model without gates: each group cut by its unit kind (:mod:`shrinknet.units`:
    transformer units by their structure, whole sublayers replaced by stubs, Linear / Conv2d layers on
    Torch-Pruning's dependency graph). ``sizes``: {unit name: its size where the keep came from}, checked;
    ``fills``: {group: what its removed units return} (a sublayer's; default 0)."""
    p = next(iter(model.parameters()), None)
    x = batch.take(batch.check(example_input, "example_input", p.dtype if p is not None else torch.float32,
                               p.device if p is not None else None), slice(0, 1))
    if any(unwrap_compiled(m) is not m for m in model.modules()):     # torch.compile'd parts: the modules they wrap
        model = strip_compiled(copy.deepcopy(model))
    modes = training_flags(model)          # each module's own: a wrapper in train mode around an eval model
    small = copy.deepcopy(model).eval()
    _replace_torch_attention(small)      # nn.MultiheadAttention's heads are tied to its width
    names = None
    if (isinstance(keep, dict) and not isinstance(keep, Keep)
            and any(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keep)):
        names = [u.name for u in find_units(small, x)]     # group l: the l-th of the model's default units
    keep = _coerce_keep(keep, names)
    try:
        units = find_units(small, x, list(keep))
    except ShrinkNetError as e:          # the names came from `keep`: say so
        if not str(e).startswith("units:"):
            raise
        raise ShrinkNetError("keep:" + str(e)[len("units:"):]) from None
    for u in units:
        want = (sizes or {}).get(u.name)
        if want is not None and want != u.size:
            raise ShrinkNetError(f"model: {u.name!r} has {u.size} units, but the result was pruned on a model where it "
                                 f"had {want}; expected the model the result came from")
    # a transformer block without its heads or FFN neurons still passes its input on (residual)
    kept = {u.name: _indices(keep[u.name], u.size, u.name, empty_ok=kind_of(u).may_empty) for u in units}
    removing = [u for u in units if len(kept[u.name]) < u.size]
    # each group is cut by its kind: transformer units by their known structure, layers on the traced
    # dependency graph (built once, where a kind needs it)
    graph = dependency_graph(small, x) if any(kind_of(u).needs_graph for u in removing) else None
    fills = {k: v for k, v in (fills or {}).items() if k in kept}
    for u in removing:
        kind_of(u).cut(small, u, kept[u.name], graph=graph, example_input=x, fill=fills.get(u.name))
    if check:
        _check(model, small, units, kept, x, fills)
    before, after = layer_shapes(model), layer_shapes(small)
    # each resized layer's shape as it was first (an earlier shrink's record kept): what save_model writes
    small.shrinknet_resized = {**{n: before.get(n) for n in after if after[n] != before.get(n)},
                               **getattr(model, "shrinknet_resized", {})}
    return restore_training(small, modes)


@torch.no_grad()
def _check(model, small, units, kept, x, fills=None):
    if any(p.dtype in HALF for p in model.parameters()):
        # half precision rounds to 3 significant digits, far coarser than the check's tolerance: float32 copies
        model, small = copy.deepcopy(model).float(), copy.deepcopy(small).float()
        x = batch.to(x, dtype=torch.float32)                    # (float inputs only: ids stay ids)
    gm = GatedModel(model, [u.name for u in units], x)
    for l, u in enumerate(units):
        if u.name in (fills or {}) and f"fill{l}" in gm._buffers:
            getattr(gm, f"fill{l}").copy_(fills[u.name])
        g = torch.zeros(u.size, dtype=gm.gates[l].dtype)
        g[kept[u.name]] = 1.0
        gm.set_gates([*gm.gates[:l], g, *gm.gates[l + 1:]])
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        gen = torch.Generator().manual_seed(0)
        xs = torch.randn(8, *x.shape[1:], generator=gen).to(x)
    else:
        xs = x                            # token ids and masks: random values may not be valid inputs
    with plain_attention():
        want, got = gm(xs), batch.logits_of(batch.call(small, xs))
    if want.shape != got.shape:
        raise ShrinkNetError(f"shrink: the smaller model's output has shape {tuple(got.shape)}, expected "
                             f"{tuple(want.shape)}; a unit of {[u.name for u in units]} reaches the output")
    err = float((want - got).abs().max())
    scale = float(want.abs().max()) + 1e-12
    if err > CHECK_RTOL * scale + 1e-6:
        raise ShrinkNetError(
            f"shrink: the smaller model differs from the gated one (max |diff| {err:.3g}) for units of "
            f"{[u.name for u in units]}: a removed unit is not silent to its consumers, e.g. an activation "
            f"called as a function with f(0) != 0 (sigmoid) after the gate, or a dependency the tracer "
            f"does not see")


__all__ = ["shrink", "shrink_mlp", "shrink_module"]
