"""Saving shrunk models without pickle, and exporting them to ONNX.

A shrunk model is the user's own class with smaller layers, so a file holds its state dict plus a
description of every resized layer's shape (safetensors metadata; JSON, no code):

* an ``nn.Sequential`` built only from standard layers (Linear, Conv2d, BatchNorm, activations,
  pooling, Flatten, Dropout, nested Sequentials) is described completely and loads on its own;
* any other model loads into a ``template``: an instance of the original (unshrunk) architecture,
  made by the caller's own code, whose Linear / Conv2d / BatchNorm layers are resized to the
  stored shapes before the weights are loaded.

Format version 2 also records which tensors are tied (stored once), the layers shrink resized with
their shapes before, and a Hugging Face config's sizes; version 1 files (every tensor stored, nothing
more recorded) still load, tied where the template ties two equal tensors.

Loading never unpickles and never imports or runs code named in a file.

    >>> save_model(small, "small.safetensors", example_input=X[:1])
    >>> small = load_model("small.safetensors")                   # an nn.Sequential
    >>> small = load_model("small.safetensors", template=MyNet())  # any other model
    >>> export_onnx(small, "small.onnx", example_input=X[:1])
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from ._io import atomic_target, check_target
from ._validation import (MissingDependencyError, ShrinkNetError, ShrinkNetFileNotFoundError, all_finite, as_tensor,
                          check_materialized, check_path, require, unwrap_compiled)
from .models import MLP, _digest
from .units import KINDS

FORMAT = "shrinknet-module"
FORMAT_VERSION = "2"

#: layer types a file may name, and the constructor arguments kept for each
_LAYERS = {
    "Linear": ("in_features", "out_features", "bias"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
               "padding_mode"),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "ReLU": ("inplace",), "GELU": ("approximate",), "Sigmoid": (), "Tanh": (), "SiLU": (), "Identity": (),
    "LeakyReLU": ("negative_slope",), "ELU": ("alpha",), "Softmax": ("dim",), "LogSoftmax": ("dim",),
    "Flatten": ("start_dim", "end_dim"), "Dropout": ("p",),
    "MaxPool2d": ("kernel_size", "stride", "padding"), "AvgPool2d": ("kernel_size", "stride", "padding"),
    "AdaptiveAvgPool2d": ("output_size",),
}


def _arg(mod, a):
    if a == "bias":
        return getattr(mod, "bias", None) is not None
    v = getattr(mod, a)
    return list(v) if isinstance(v, tuple) else v


def describe(model: nn.Module):
    """A JSON-able description of an nn.Sequential of standard layers, or None for other models."""
    if type(model) is nn.Sequential:
        children = [[n, describe(c)] for n, c in model.named_children()]
        return None if any(c is None for _, c in children) else {"type": "Sequential", "children": children}
    name = type(model).__name__
    if name in _LAYERS and type(model) is getattr(nn, name):
        return {"type": name, **{a: _arg(model, a) for a in _LAYERS[name]}}
    return None


def build(spec) -> nn.Module:
    """The module a :func:`describe` spec stands for (only the whitelisted layer types)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ShrinkNetError(f"architecture: expected a layer description, got {spec!r}"[:200])
    kind = spec["type"]
    if kind == "Sequential":
        seq = nn.Sequential()
        for name, child in spec.get("children", []):
            seq.add_module(str(name), build(child))
        return seq
    if kind not in _LAYERS:
        raise ShrinkNetError(f"architecture: layer type {kind!r} is not supported: expected one of "
                             f"{', '.join(sorted(_LAYERS))}")
    kwargs = {a: spec[a] for a in _LAYERS[kind] if a in spec}
    return getattr(nn, kind)(**kwargs)




def layer_shapes(model: nn.Module) -> dict:
    """{module name: its shape attributes} for every module a shrink may resize, as the unit kinds say
    (Linear, Conv2d, BatchNorm, Conv1D, an attention module's head counts)."""
    out = {}
    for kind in KINDS.values():
        for n, attrs in kind.shapes(model).items():
            out[n] = {**out.get(n, {}), **attrs}
    return out


def _kinds_meta(model: nn.Module) -> dict:
    """{metadata key: JSON} of what the unit kinds record of ``model`` (removed sublayers' stubs, the
    modules where shrinknet's MultiheadAttention stands in for torch's, ...)."""
    return {k: json.dumps(v) for kind in KINDS.values() for k, v in kind.save_meta(model).items()}


def _restore_kinds(model: nn.Module, meta: dict, where: str) -> None:
    """Rebuild in ``model`` (in place) what the unit kinds recorded in a file's metadata."""
    for kind in KINDS.values():
        kind.load_meta(model, meta, where)


def save_model(model: nn.Module, path, *, example_input=None) -> Path:
    """Write ``model`` (any nn.Module, e.g. one :func:`shrinknet.shrink` returned) to a .safetensors
    file: its state dict and the shapes of its layers; atomic. ``example_input`` records the input
    shape (used by the CLI).

    Tied tensors (a language model's embedding and output layer) are stored once and tied again on
    load. The file also records the layers :func:`shrinknet.shrink` resized with their shapes before
    (``shrinknet_resized``) and, for a Hugging Face model, its config's sizes: on load, a template
    other than the original architecture is refused. A ``torch.compile``'d model is saved as the
    module it wraps. ``path``: an existing folder, or a place where no file can be made, raises
    :class:`~shrinknet._validation.ShrinkNetWriteError` before anything is written."""
    from safetensors.torch import save_file
    if isinstance(model, MLP):                     # the MLP's own file format (sizes and activations)
        return model.save(path)
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    model = unwrap_compiled(model)
    check_materialized(model)
    path = check_target(path)
    shapes, ties = layer_shapes(model), _ties(model)
    resized = {n: v for n, v in getattr(model, "shrinknet_resized", {}).items() if n in shapes}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "class": type(model).__name__,
            "shapes": json.dumps(shapes), "tied": json.dumps(ties), "resized": json.dumps(resized)}
    config = _config_sizes(model)
    if config:
        meta["config"] = json.dumps(config)
    meta.update(_kinds_meta(model))                # e.g. removed sublayers: their stubs, rebuilt on load
    spec = describe(model)
    if spec is not None:
        meta["architecture"] = json.dumps(spec)
    if isinstance(example_input, torch.Tensor) or (example_input is not None and not isinstance(example_input, (dict, tuple))):
        meta["input_shape"] = json.dumps(list(torch.as_tensor(example_input).shape[1:]))
    tensors, seen = {}, set()
    for k, v in model.state_dict().items():
        if k in ties:                                # stored once, under the name it was first reached by
            continue
        v = v.detach().cpu().contiguous()
        # other tensors sharing memory (views of one another) are stored apart: safetensors refuses shared memory
        tensors[k] = v.clone() if v.data_ptr() in seen else v
        seen.add(v.data_ptr())
    meta["sha256"] = _digest(tensors)                # checked on load: a changed byte is refused
    with atomic_target(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_meta(path) -> dict:
    """The metadata of a model file (format, input_shape, ...), without loading the tensors."""
    from safetensors import safe_open
    path = check_path(path)
    if not path.is_file():
        raise (ShrinkNetError(f"model file: expected a file, got the folder {path}") if path.is_dir() else
               ShrinkNetFileNotFoundError(f"model file {path}: not found"))
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ShrinkNetError(f"model file {path}: not a readable safetensors file ({e})") from None


def load_model(path, template: nn.Module | None = None) -> nn.Module:
    """Read a file written by :func:`save_model` (or an MLP file). Never unpickles.

    ``template``: an instance of the original architecture, needed unless the file describes the
    whole model (an nn.Sequential of standard layers) or holds an MLP. It is not modified. It must
    be the architecture the saved model was shrunk from: every layer as the file has it, or as it
    was before shrink for the layers shrink resized (a file written before these were recorded: any
    Linear / Conv2d / BatchNorm / attention layer may differ), and a Hugging Face template's config
    gives the sizes of the saved model's; the error names the first layer or setting that differs.
    Tensors tied in the saved model are tied again; each tensor keeps its stored precision."""
    from safetensors import safe_open
    meta = read_meta(path)
    path = Path(path)
    if meta.get("format") == "shrinknet-mlp":
        return MLP.load(path)
    if meta.get("format") != FORMAT:
        raise ShrinkNetError(f"model file {path}: expected format {FORMAT!r} or 'shrinknet-mlp', "
                             f"got {meta.get('format')!r}")
    if template is not None:
        if not isinstance(template, nn.Module):
            raise ShrinkNetError(f"template: expected a torch nn.Module, got {type(template).__name__}")
        template = unwrap_compiled(template)
        check_materialized(template, "template")
    if template is None and "architecture" not in meta:
        raise ShrinkNetError(f"model file {path}: holds a {meta.get('class')!r}, which only loads into a "
                             f"template: pass template=<an instance of the original architecture>")
    try:
        shapes = json.loads(meta["shapes"])
        tied = json.loads(meta["tied"]) if "tied" in meta else None
        resized = json.loads(meta["resized"]) if "resized" in meta else None
        config = json.loads(meta.get("config", "{}"))
        if not all(isinstance(v, dict) for v in (shapes, {} if tied is None else tied, {} if resized is None else resized,
                                                 config)):
            raise ValueError("shapes, tied, resized or config is not a JSON object")
    except (KeyError, ValueError, TypeError) as e:
        raise ShrinkNetError(f"model file {path}: inconsistent contents ({e})") from None
    if template is not None:
        _check_template(template, config, shapes, resized, path)
    with safe_open(str(path), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        # the model the metadata describes, built on the meta device (no memory), against the stored shapes:
        # a file whose metadata asks for huge layers is refused before anything that size is allocated
        try:
            _check_shapes(_skeleton(meta, template, path, tied), stored, path, tied or {}, template is not None,
                          shapes)
        except (KeyError, ValueError, TypeError, RuntimeError, NotImplementedError, AttributeError) as e:
            if isinstance(e, ShrinkNetError):
                raise
            raise ShrinkNetError(f"model file {path}: inconsistent contents ({e})") from None
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "sha256" in meta and _digest(tensors) != meta["sha256"]:
        raise ShrinkNetError(f"model file {path}: its tensors do not match the checksum it was saved with (the file "
                             f"was changed or damaged after saving)")
    try:
        model = copy.deepcopy(template) if template is not None else build(json.loads(meta["architecture"]))
        _restore_kinds(model, meta, f"model file {path}")
        floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
        if floats:
            model = model.to(max(set(floats), key=floats.count))   # the file's precision, not the builder's
        _resize(model, shapes, path)
        if tied is None:        # a file from before ties were recorded stores both: tie what the template ties
            tied = {a: s for a, s in _ties(template if template is not None else model).items()
                    if a in tensors and s in tensors and tensors[a].shape == tensors[s].shape
                    and torch.equal(tensors[a], tensors[s])}
        _tie(model, tied, path)
        full = {**tensors, **{a: tensors[s] for a, s in tied.items()}}
        _match_dtypes(model, full)                     # a mixed-precision model keeps each tensor's precision
        model.load_state_dict(full, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        if isinstance(e, ShrinkNetError):
            raise
        raise ShrinkNetError(f"model file {path}: inconsistent contents ({e})") from None
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not all_finite(v):
            raise ShrinkNetError(f"model file {path}: parameter {k} has NaN/inf values")
    if resized is None:         # not recorded: the layers that differ from the template's (without one: unknown)
        own = layer_shapes(template) if template is not None else {}
        resized = {n: own.get(n) for n, attrs in shapes.items() if own.get(n) != attrs}
    model.shrinknet_resized = resized                 # what a save of this model records again
    return model.eval()


def _config_sizes(model) -> dict:
    """The integer settings of a Hugging Face model's config (sizes, counts: not token ids), or {}."""
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    if not callable(to_dict):
        return {}
    try:
        d = to_dict()
    except Exception:           # a config object of another library, whose to_dict needs arguments
        return {}
    out = {k: v for k, v in d.items() if type(v) is int and not k.endswith(("_id", "_ids"))}
    if type(getattr(model.config, "num_labels", None)) is int:
        out["num_labels"] = model.config.num_labels
    return out


def _check_template(template, saved: dict, shapes, resized, path) -> None:
    """Refuse a template other than the architecture the saved model was shrunk from (its config's sizes,
    a layer's shape: the file's, or for a layer shrink resized its shape before), from the metadata alone."""
    have = _config_sizes(template)
    for k in sorted(set(saved) & set(have)):
        if saved[k] != have[k]:
            raise ShrinkNetError(f"template: its config has {k}={have[k]}, but {path} was saved from a model with "
                                 f"{k}={saved[k]}; expected a template made from the saved model's config")
    if resized is None:         # a file from before the record: any layer may have been resized
        return
    own = layer_shapes(template)
    for name in sorted(shapes):
        attrs, mine = resized.get(name, shapes[name]), own.get(name)
        if not isinstance(attrs, dict) or mine is None:
            continue                    # (unknown; a layer the template lacks is named when the file is read)
        differ = [a for a in attrs if a in mine and attrs[a] != mine[a]]
        if differ:
            a = differ[0]
            raise ShrinkNetError(f"template: its layer {name!r} has {a}={mine[a]}, but {path} was saved from a model "
                                 f"with {a}={attrs[a]} there" + (" (before shrink)" if name in resized else "")
                                 + "; expected a template of the architecture the file was saved from")


def _ties(model: nn.Module) -> dict:
    """{state-dict name: the name first reached} for every parameter or buffer that is the same tensor
    as an earlier one (tied weights)."""
    keys, first, ties = set(model.state_dict(keep_vars=True)), {}, {}
    for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if n in keys:
            if id(t) in first:
                ties[n] = first[id(t)]
            else:
                first[id(t)] = n
    return ties


def _slot(model: nn.Module, name: str, path):
    """(module, attribute, tensor, is a parameter) of a state-dict name."""
    owner, _, leaf = str(name).rpartition(".")
    try:
        mod = model.get_submodule(owner) if owner else model
    except AttributeError:
        mod = None
    if mod is not None and leaf in mod._parameters and mod._parameters[leaf] is not None:
        return mod, leaf, mod._parameters[leaf], True
    if mod is not None and leaf in mod._buffers and mod._buffers[leaf] is not None:
        return mod, leaf, mod._buffers[leaf], False
    raise ShrinkNetError(f"model file {path}: it ties {name!r}, which the model does not have")


def _tie(model: nn.Module, tied: dict, path) -> None:
    """Make ``model``'s ties those of the file: each alias the same tensor as its source, and tensors
    the template shares but the file stores apart given their own."""
    for alias, source in _ties(model).items():
        if tied.get(alias) != source:
            mod, leaf, t, param = _slot(model, alias, path)
            own = t.detach().clone()
            if param:
                setattr(mod, leaf, nn.Parameter(own, requires_grad=t.requires_grad))
            else:
                setattr(mod, leaf, own)              # (a buffer already: it stays one)
    for alias, source in tied.items():
        mod, leaf, t, param = _slot(model, alias, path)
        _, _, s, sparam = _slot(model, source, path)
        if param != sparam or t.shape != s.shape:
            raise ShrinkNetError(f"model file {path}: it ties {alias!r} to {source!r}, but the model has them as "
                                 f"{tuple(t.shape)} and {tuple(s.shape)}")
        setattr(mod, leaf, s)                    # a Parameter, or a tensor into the buffer slot


def _match_dtypes(model: nn.Module, tensors: dict) -> None:
    """Give every floating tensor of ``model`` the precision of the stored one (in place: ties kept)."""
    with torch.no_grad():
        for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
            v = tensors.get(n)
            if v is not None and v.is_floating_point() and t.is_floating_point() and v.dtype != t.dtype:
                t.data = t.data.to(v.dtype)


def _skeleton(meta: dict, template, path, tied) -> nn.Module:
    """The model the file's metadata describes (resized template or built architecture), with every
    tensor on the meta device: shapes, no memory; tied as the file says (where it says)."""
    if template is None:
        with torch.device("meta"):
            model = build(json.loads(meta["architecture"]))
    else:
        memo = {}                       # a copy of the template whose tensors are meta ones (ties kept)
        for t in [*template.parameters(), *template.buffers()]:
            e = torch.empty_like(t, device="meta")
            memo[id(t)] = nn.Parameter(e, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else e
        model = copy.deepcopy(template, memo)
    _restore_kinds(model, meta, f"model file {path}")
    _resize(model, json.loads(meta["shapes"]), path)
    if tied is not None:
        _tie(model, tied, path)
    return model


def _check_shapes(model: nn.Module, stored: dict, path, tied: dict, template: bool, shapes: dict) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    if want == stored:
        return
    diff = sorted(set(want.items()) ^ set(stored.items()), key=str)
    own = [k for k, _ in diff if k.rpartition(".")[0] not in shapes]
    if template and own:        # a tensor of a layer the file does not resize: the template is another model
        k = own[0]
        raise ShrinkNetError(f"template: its {k} " + (f"has shape {want[k]}, but {path} stores {stored[k]}"
                                                      if k in want and k in stored else
                                                      f"is not in {path}" if k in want else
                                                      f"is missing ({path} stores it)")
                             + "; expected a template of the architecture the file was saved from")
    diff = diff[:4]
    raise ShrinkNetError(f"model file {path}: its metadata describes tensors other than those it stores (e.g. "
                         + ", ".join(f"{k} {'described' if want.get(k) == v else 'stored'} as {v}" for k, v in diff)
                         + ")")


def _resize(model: nn.Module, shapes: dict, path) -> None:
    """Give each named module the stored shape, as its unit kind says (a Linear / Conv2d / Conv1D /
    BatchNorm fresh parameters of that shape, an attention module its head counts)."""
    mods = dict(model.named_modules())
    resizers = [r for r in (kind.resizer(model, path) for kind in KINDS.values()) if r is not None]
    for name, attrs in shapes.items():
        m = mods.get(name)
        if m is None or not any(resize(name, m, attrs) for resize in resizers):
            raise ShrinkNetError(f"model file {path}: layer {name!r} is not a Linear / Conv2d / Conv1D / BatchNorm of "
                                 f"the template")


def check_onnx() -> None:
    """Raise :class:`~shrinknet._validation.MissingDependencyError` (an ImportError), saying how to
    install them, unless the ONNX export packages (onnx, onnxscript) are there."""
    for name in ("onnx", "onnxscript"):
        require(name, "onnx", "ONNX export")


def export_onnx(model: nn.Module, path, example_input) -> Path:
    """Export ``model`` to ONNX (``torch.onnx.export``, dynamo exporter), batch size left free.

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install 'shrinknet[onnx]'``)."""
    import contextlib
    import io
    import logging
    import warnings
    check_onnx()
    model = unwrap_compiled(model)
    check_materialized(model)
    p = next(iter(model.parameters()), None)
    x = as_tensor(example_input, "example_input", p.dtype if p is not None else torch.float32)[:1]
    x = x.expand(2, *x.shape[1:]).contiguous()            # batch 2, so the batch size stays symbolic
    path = check_target(path)
    m = copy.deepcopy(model).cpu().eval()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with atomic_target(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.ERROR)
        try:
            # external_data=False: the weights inside the one file (a copy of it alone runs; no hidden .data)
            torch.onnx.export(m, (x.cpu(),), str(tmp), dynamo=True, external_data=False, input_names=["input"],
                              output_names=["output"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        except Exception as e:
            raise ShrinkNetError(f"ONNX export of {type(model).__name__} failed ({type(e).__name__}: {e})"[:500]) from None
        finally:
            quiet.setLevel(level)
    return path


def save_shrunk(small: nn.Module, folder, example_input, report=None, onnx: bool | None = None) -> list[str]:
    """Write ``small.safetensors`` (with the input shape), ``report.json`` (a ShrinkReport, if given) and
    ``small.onnx`` into ``folder``; the names written. ``onnx``: True = required (an error without the
    packages), False = no ONNX file, None = where the packages are installed."""
    folder = check_path(folder, "folder")
    save_model(small, folder / "small.safetensors", example_input=example_input)
    written = ["small.safetensors"]
    if report is not None:
        report.save_json(folder / "report.json")
        written.append("report.json")
    if onnx is None:
        try:
            check_onnx()
            onnx = True
        except MissingDependencyError:
            onnx = False
    if onnx:
        export_onnx(small, folder / "small.onnx", example_input)
        written.append("small.onnx")
    return written


__all__ = ["save_shrunk", "save_model", "load_model", "read_meta", "export_onnx", "describe", "build"]
