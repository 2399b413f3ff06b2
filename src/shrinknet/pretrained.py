"""A shrunk Hugging Face model as a folder that reloads: :func:`save_pretrained` and :func:`from_pretrained`.

The folder is the ecosystem's: ``config.json``, ``model.safetensors`` (tied tensors stored once, as
transformers stores them; each tensor in the model's own precision), the tokenizer files and
``generation_config.json`` of a ``source`` folder. Two kinds:

* **plain**: where the config can say the new sizes (the same FFN width in every block; the same
  head and key/value head counts in every attention module whose head size is a setting,
  ``head_dim``: LLaMA-style, ViT), they are written into it, and
  ``transformers.AutoModelFor....from_pretrained(folder)`` reloads the model as it is (what
  ``prune(..., uniform=True)`` gives);
* **per layer**: otherwise the config keeps the original sizes, its ``"shrinknet"`` entry records
  every resized layer's shape, and :func:`from_pretrained` rebuilds the class the config names (from
  the transformers package: code named in a folder, ``auto_map``, is never run) with those shapes and
  loads the weights. So that a plain ``from_pretrained`` of such a folder can never load something
  else, one size of the config (the FFN width, or else the head count) is written as a sentence
  naming :func:`shrinknet.from_pretrained`: transformers' config check refuses it, with that sentence;
  so is the ``model_type``, which the Auto classes refuse with that sentence (``AutoTokenizer`` still
  loads the folder's tokenizer).

A folder is plain exactly when a model built from the edited config has the shrunk model's tensors
and head counts: that is checked (on the meta device, no memory) before anything is written. Sizes
that transformers' own config checks refuse make a per-layer folder too (``LlamaConfig`` wants
``hidden_size`` to be a multiple of the head count, even with a ``head_dim`` of its own).

    >>> shrinknet.save_pretrained(small, "small/", source="original/")     # tokenizer and generation config
    >>> small = shrinknet.from_pretrained("small/")
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from . import blocks
from ._errors import ShrinkNetWriteError, check_path
from ._validation import ShrinkNetError, check_dtype, check_materialized, require, unwrap_compiled
from .saving import _resize, _ties, layer_shapes

FORMAT = "shrinknet-pretrained"
VERSION = 1
KEY = "shrinknet"                     # the config's entry this module writes
WEIGHTS = "model.safetensors"
#: config names of the FFN width, and of the head counts
FFN_KEYS = ("intermediate_size", "n_inner", "ffn_dim", "d_ff")
HEAD_KEYS = ("num_attention_heads", "n_head")
#: the config sizes a per-layer folder writes as a sentence, the first one it has
POISON_KEYS = (*FFN_KEYS, *HEAD_KEYS, "num_hidden_layers", "n_layer")
#: files of a source folder copied beside the model (tokenizers, processors, generation settings)
SOURCE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                "chat_template.jinja", "chat_template.json", "preprocessor_config.json", "processor_config.json",
                "image_processor_config.json", "generation_config.json")
#: files of a model folder that a new save replaces (stale shards must not stay beside the new weights)
_REPLACED = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json",
             "pytorch_model*.bin", "pytorch_model.bin.index.json")
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MESSAGE = ("this folder holds a model with per-layer sizes (in the config's 'shrinknet' entry): load it with "
            "shrinknet.from_pretrained(folder)")
_TYPE = "shrinknet-per-layer: load it with shrinknet.from_pretrained(folder)"


# ---- saving -------------------------------------------------------------------------------------------
def save_pretrained(small, folder, *, source=None, overwrite: bool = False) -> Path:
    """Write the Hugging Face model ``small`` (e.g. what :func:`shrinknet.shrink` returned) as a model folder.

    Parameters
    ----------
    small : transformers PreTrainedModel
        A model of a class of the transformers package, as its config built it or smaller.
    folder : str or Path
        A new or empty folder, or one this function wrote before (its model files are replaced; other
        files stay). Another non-empty folder is refused unless ``overwrite``.
    source : str or Path, optional
        The folder the model was loaded from: its tokenizer / processor files and
        ``generation_config.json`` are copied (never its config or weights).
    overwrite : bool
        Write into a non-empty folder not written by shrinknet (its model files are replaced).

    Returns
    -------
    Path of the folder. It reloads with ``transformers.AutoModelFor....from_pretrained(folder)`` where
    its config can say every size (see the module's doc), and always with :func:`from_pretrained`.
    """
    require("transformers", "transformers", "save_pretrained")
    from safetensors.torch import save_file
    model = unwrap_compiled(small)
    cls = _check_model(model)
    check_materialized(model)
    folder = _check_folder(folder, overwrite)
    src = None if source is None else _check_source(source)
    config = model.config
    d = config.to_dict()
    d.pop(KEY, None)
    original = _built(cls, config)
    if original is None:
        raise ShrinkNetError(f"small: transformers cannot build a {cls.__name__} from its own config; expected a model "
                             f"whose config builds its class")
    plain = _plain_config(model, cls, config, original)
    dtype = _dtype_of(model)
    if plain is not None:
        d = plain
        d[KEY] = {"format": FORMAT, "version": VERSION}
    else:
        before, after = layer_shapes(original), layer_shapes(model)
        shapes = {n: a for n, a in after.items() if before.get(n) != a}
        key = next((k for k in POISON_KEYS if k in d), None)
        if key is None:
            raise ShrinkNetError(f"small: the config of {cls.__name__} has none of {', '.join(POISON_KEYS)}; expected a "
                                 f"transformers config with an FFN width or head count")
        d[KEY] = {"format": FORMAT, "version": VERSION, "shapes": shapes,
                  "config": {key: d[key], "model_type": d.get("model_type")}}
        d[key] = _MESSAGE
        # the model type too: the Auto classes then refuse the folder by that sentence, while AutoTokenizer
        # (which reads the config, and falls back to a generic one for a type it does not know) still loads
        d["model_type"] = _TYPE
        _check_refused(type(config), d, key)
    d["architectures"] = [cls.__name__]
    d["dtype"] = str(dtype).removeprefix("torch.")
    ties = _ties(model)
    tensors, seen = {}, set()
    for k, v in model.state_dict().items():
        if k in ties:                         # stored once, as transformers stores tied weights
            continue
        v = v.detach().cpu().contiguous()
        tensors[k] = v.clone() if v.data_ptr() in seen else v      # (safetensors refuses shared memory)
        seen.add(v.data_ptr())
    tmp = _scratch(folder)
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(d, indent=2, sort_keys=True, default=str) + "\n")
        gen = getattr(model, "generation_config", None)
        if gen is not None and callable(getattr(model, "can_generate", None)) and model.can_generate():
            (tmp / "generation_config.json").write_text(gen.to_json_string(use_diff=True))
        if src is not None:
            for name in SOURCE_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)
        _move_into(tmp, folder)
    except OSError as e:
        raise ShrinkNetWriteError(f"folder {folder}: cannot write there ({e.strerror or e}); expected a folder this "
                                  f"user can write to") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _check_model(model):
    """The model's class, which must be one the transformers package names (a reload builds it by name)."""
    import transformers
    if not isinstance(model, nn.Module) or not callable(getattr(getattr(model, "config", None), "to_dict", None)):
        raise ShrinkNetError(f"small: expected a Hugging Face transformers model (with a .config), got "
                             f"{type(model).__name__}; other models save with shrinknet.save_model")
    cls = type(model)
    if getattr(transformers, cls.__name__, None) is not cls:
        raise ShrinkNetError(f"small: expected a model class of the transformers package (a reload builds the class "
                             f"by its name, never code from the folder), got {cls.__module__}.{cls.__name__}")
    return cls


def _check_folder(folder, overwrite: bool) -> Path:
    folder = check_path(folder, "folder")
    if not isinstance(overwrite, bool):
        raise ShrinkNetError(f"overwrite: expected True or False, got {overwrite!r}")
    if folder.exists() and not folder.is_dir():
        raise ShrinkNetWriteError(f"folder: expected a folder, got the existing file {folder}")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite and not _ours(folder):
        raise ShrinkNetWriteError(f"folder {folder}: not empty, and not written by shrinknet.save_pretrained; expected a "
                                  f"new or empty folder, or overwrite=True to replace the model files in it")
    return folder


def _ours(folder: Path) -> bool:
    """Whether ``folder`` holds a config written by :func:`save_pretrained`."""
    try:
        d = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and isinstance(d.get(KEY), dict) and d[KEY].get("format") == FORMAT


def _check_source(source) -> Path:
    src = check_path(source, "source")
    if not src.is_dir():
        raise ShrinkNetError(f"source: expected the folder the model was loaded from (tokenizer files, "
                             f"generation_config.json), got {'the file ' if src.exists() else 'no such folder '}{src}")
    return src


def _scratch(folder: Path) -> Path:
    """A new folder beside ``folder`` (one file system: its files move in by rename)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as e:
        raise ShrinkNetWriteError(f"folder: expected a folder this user can write to, got {folder} "
                                  f"({e.strerror or type(e).__name__})") from None


def _move_into(tmp: Path, folder: Path) -> None:
    """Replace the model files of ``folder`` with those of ``tmp`` (stale weight shards removed first)."""
    folder.mkdir(parents=True, exist_ok=True)
    for pattern in _REPLACED:
        for old in folder.glob(pattern):
            if old.is_file():
                old.unlink()
    for f in tmp.iterdir():
        os.chmod(f, 0o644)
        os.replace(f, folder / f.name)


def _dtype_of(model) -> torch.dtype:
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    return max(set(floats), key=floats.count) if floats else torch.float32


def _built(cls, config):
    """``cls`` built from ``config`` on the meta device (shapes only), or None where it cannot be."""
    try:
        with torch.device("meta"):
            return cls(config)
    except Exception:                 # (a config transformers refuses, a class that cannot build on meta)
        return None


def _same(a: nn.Module, b: nn.Module) -> bool:
    """Same tensors (names, shapes) and the same layer shapes and head counts."""
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    return sa == sb and layer_shapes(a) == layer_shapes(b)


def _plain_config(model, cls, config, original) -> dict | None:
    """The config dict with the shrunk model's sizes, where one builds exactly ``model``'s shapes; else None."""
    d = config.to_dict()
    d.pop(KEY, None)
    if _same(original, model):
        return d
    edits: dict = {}
    before, after = layer_shapes(original), layer_shapes(model)
    for key in FFN_KEYS:                        # the FFN width: the one new size of the layers that had the old
        if key not in d:
            continue
        old = d[key] if type(d[key]) is int else 4 * int(getattr(config, "hidden_size", 0) or 0)
        new = {after[n][a] for n in after if n in before for a in after[n]
               if before[n].get(a) == old and after[n][a] != old}
        if len(new) > 1:
            return None
        if new:
            edits[key] = new.pop()
        break
    sites = blocks.find_sites(model)[0]
    counts = {(s.heads["heads"], s.heads["kv"], s.heads["head_dim"]) for s in sites}
    if len(counts) > 1:
        return None
    if counts:
        H, K, hd = counts.pop()
        key = next((k for k in HEAD_KEYS if k in d), None)
        if key is not None and d[key] != H:
            edits[key] = H
            if "num_key_value_heads" in d:
                edits["num_key_value_heads"] = K
            edits["head_dim"] = hd
    if not edits:
        return None
    d = {**d, **edits}
    try:
        candidate = type(config).from_dict(copy.deepcopy(d))
    except Exception:                           # (transformers' own checks: e.g. width not a multiple of heads)
        return None
    built = _built(cls, candidate)
    return d if built is not None and _same(built, model) else None


def _check_refused(config_cls, d: dict, key: str) -> None:
    """A per-layer config must be refused by transformers' own config check (so a plain load fails, naming us)."""
    try:
        config_cls.from_dict(copy.deepcopy(d))
    except Exception:
        return
    raise ShrinkNetError(f"small: its config class {config_cls.__name__} accepts any value of {key!r}, so a plain "
                         f"from_pretrained of a folder with per-layer sizes would not fail; expected a config class "
                         f"that checks its fields' types (transformers 5)")


# ---- loading ------------------------------------------------------------------------------------------
def from_pretrained(folder, *, dtype=None) -> nn.Module:
    """The model of a folder written by :func:`save_pretrained` (or any transformers model folder with
    safetensors weights), built as the class its config names, in eval mode. Never unpickles, never runs
    code from the folder (a config with ``auto_map`` is refused).

    Parameters
    ----------
    folder : str or Path
    dtype : torch dtype or its name, optional
        Default: the precision the weights were saved in.
    """
    require("transformers", "transformers", "from_pretrained")
    import transformers
    folder = check_path(folder, "folder")
    if not folder.is_dir():
        raise ShrinkNetError(f"folder: expected a model folder (config.json, model.safetensors), got "
                             f"{'the file ' if folder.exists() else 'no such folder '}{folder}")
    want = check_dtype(dtype, allowed=_DTYPES)
    try:
        d = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise ShrinkNetError(f"folder {folder}: has no config.json; expected a model folder") from None
    except (OSError, ValueError) as e:
        raise ShrinkNetError(f"folder {folder}: config.json is not readable JSON ({e})") from None
    if not isinstance(d, dict):
        raise ShrinkNetError(f"folder {folder}: config.json holds {type(d).__name__}; expected a JSON object")
    if "auto_map" in d:
        raise ShrinkNetError(f"folder {folder}: its config names code to run (auto_map: {d['auto_map']!r}); shrinknet "
                             f"never runs code from a folder: expected a config of a transformers class")
    arch = d.get("architectures")
    name = arch[0] if isinstance(arch, list) and len(arch) == 1 and isinstance(arch[0], str) else None
    cls = getattr(transformers, name, None) if name else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ShrinkNetError(f"folder {folder}: config.json names architectures={arch!r}; expected one model class of "
                             f"the transformers package")
    entry = d.pop(KEY, None)
    shapes = entry.get("shapes") if isinstance(entry, dict) else None
    if shapes is None:                     # a plain folder: transformers loads it (safetensors only, no code)
        return cls.from_pretrained(str(folder), dtype=want or "auto", use_safetensors=True,
                                   trust_remote_code=False).eval()
    if not (isinstance(shapes, dict) and isinstance(entry.get("config"), dict)
            and all(isinstance(v, dict) for v in shapes.values())):
        raise ShrinkNetError(f"folder {folder}: the config's {KEY!r} entry is not one save_pretrained wrote")
    d.update(entry["config"])
    try:
        config = cls.config_class.from_dict(d)
    except Exception as e:
        raise ShrinkNetError(f"folder {folder}: transformers refuses its config ({type(e).__name__}: {e})"[:500]) from None
    tensors = _read_weights(folder)
    floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
    stored = max(set(floats), key=floats.count) if floats else torch.float32
    model = _empty(cls, config, stored)
    before = layer_shapes(model)
    _resize(model, shapes, folder)
    ties = _ties(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in tensors and k not in ties]
    extra = [k for k in tensors if k not in expected]
    wrong = [k for k in tensors if k in expected and tuple(tensors[k].shape) != expected[k]]
    if missing or extra or wrong:
        k = (missing or extra or wrong)[0]
        raise ShrinkNetError(f"folder {folder}: its weights do not fit the model its config describes (e.g. {k}: "
                             + ("missing" if missing else "not in the model" if extra else
                                f"stored {tuple(tensors[k].shape)}, expected {expected[k]}") + ")")
    full = {**{a: tensors[s] for a, s in ties.items() if s in tensors}, **tensors}
    model.load_state_dict(full, strict=True)
    gen = folder / "generation_config.json"
    if gen.is_file() and getattr(model, "generation_config", None) is not None:
        model.generation_config = transformers.GenerationConfig.from_pretrained(str(folder))
    if want is not None:
        model = model.to(want)
    model.shrinknet_resized = {n: before.get(n) for n in shapes}      # what save_model records
    return model.eval()


def _read_weights(folder: Path) -> dict:
    """The folder's tensors: ``model.safetensors``, or the shards its index names (never a pickle)."""
    from safetensors.torch import load_file
    index = folder / f"{WEIGHTS}.index.json"
    if (folder / WEIGHTS).is_file():
        files = [folder / WEIGHTS]
    elif index.is_file():
        try:
            files = [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ShrinkNetError(f"folder {folder}: {index.name} is not a readable index ({e})") from None
    else:
        raise ShrinkNetError(f"folder {folder}: has no {WEIGHTS} (nor its index of shards); expected safetensors "
                             f"weights (shrinknet never reads pickled .bin files)")
    out = {}
    for f in files:
        if f.resolve().parent != folder.resolve() or not f.is_file():
            raise ShrinkNetError(f"folder {folder}: its weights name {f.name!r}, which is not a file in the folder")
        try:
            out.update(load_file(str(f)))
        except Exception as e:        # safetensors' own error types for damaged files
            raise ShrinkNetError(f"folder {folder}: {f.name} is not a readable safetensors file ({e})") from None
    return out


def _empty(cls, config, dtype):
    """``cls`` built from ``config`` in ``dtype``, without spending time on initial weights (they are replaced)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:                     # (older transformers: initialise, only slower)
        from contextlib import nullcontext as no_init_weights
    with no_init_weights():
        model = cls._from_config(config, dtype=dtype)
    model.tie_weights()             # (transformers ties them in the initialisation skipped above)
    return model


__all__ = ["from_pretrained", "save_pretrained"]
