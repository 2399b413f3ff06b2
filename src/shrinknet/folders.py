"""Hugging Face model folders for the command line: the model, its tokenizer, its calibration data, its
quality, and the smaller folder that ``shrink`` writes.

A *model folder* is what ``save_pretrained`` writes: ``config.json`` and the weights as safetensors
(``model.safetensors``, or shards listed in ``model.safetensors.index.json``), in any dtype, usually with
the tokenizer's files beside them. The class is the one the config names (``architectures``), taken
from ``transformers`` itself and only if it is a causal LM, a masked LM, a sequence classifier or an
image classifier. Nothing from the folder is ever run or unpickled: a config (or tokenizer config)
naming code in the folder (``auto_map``) is refused, and so are weights stored only as pickles
(``pytorch_model.bin``, ``.pt``, ``.ckpt``).

Calibration and test data for a folder (:func:`load_data`) is either

* a text file (language models): cut with the folder's tokenizer into windows of ``seq_len`` tokens
  (:func:`text_windows`). A causal LM's window ``i`` reads tokens ``i * seq_len`` to
  ``(i + 1) * seq_len - 1`` and is labelled with the token after each, so that every token after
  the first is predicted exactly once; a masked LM's windows carry the tokenizer's
  [CLS] / [SEP] around them where it has those, and 15 % of the other tokens are masked with a fixed
  seed as Hugging Face's ``DataCollatorForLanguageModeling`` does it: of the chosen positions 80 %
  become the mask token, 10 % a random token, 10 % stay; labels are the original token there and
  -100 elsewhere;
* or an ``.npz`` (read without pickles) / ``.safetensors`` file whose keys are the model's input names
  (``input_ids``, ``attention_mask``, ``pixel_values``, ...) plus ``labels``, as a Hugging Face model
  takes them as ``labels=``: a causal LM's labels are its input ids (shifted here; when missing, the
  input ids with padding, ``attention_mask == 0``, as -100), a masked LM's the original token at the
  masked positions and -100 elsewhere, a classifier's one class per sample.

A causal LM's loss is next-token cross-entropy: :func:`load_data` returns labels already shifted
by one (``T[:, t]`` is the token after position ``t``, -100 at the last position), as
``shrinknet.prune`` takes them. :func:`quality` gives the mean cross-entropy over the labelled
positions (or samples), its exp (the perplexity) for language models, and the accuracy for
classifiers.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import inputs as batch_
from ._errors import MissingDependencyError, ShrinkNetError
from ._validation import IGNORE_LABEL
from . import pretrained
from .pretrained import save_pretrained

#: the heads the command line takes, by transformers' own lists of classes (models/auto/modeling_auto.py)
KINDS = {"causal-lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "masked-lm": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
         "sequence-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
         "image-classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"}
LANGUAGE_MODELS = ("causal-lm", "masked-lm")
#: weights in these forms are pickles (or may hold them): never loaded
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
#: a tokenizer's files (any one of them means the folder has a tokenizer)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")
#: masked LMs: share of the tokens masked, and the seed that draws them
MASK_SHARE, MASK_SEED = 0.15, 0


def _transformers():
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("a model folder needs the 'transformers' package, which is not installed: "
                                     "pip install 'shrinknet[hf]'") from None
    return transformers


def is_folder(path) -> bool:
    """Whether ``path`` is a folder (a model folder, or a folder that is refused as one)."""
    return Path(path).is_dir()


def _read_json(path: Path, what: str) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ShrinkNetError(f"{what}: expected a JSON file, got one that cannot be read ({e})"[:300]) from None
    if not isinstance(d, dict):
        raise ShrinkNetError(f"{what}: expected a JSON object, got {type(d).__name__}")
    return d


def read_config(folder) -> tuple[dict, str, str]:
    """(config.json as a dict, its class name, its kind, one of :data:`KINDS`), after every refusal
    that needs no import: no config, code named in it, an architecture the command line does not take."""
    folder = Path(folder)
    where = f"model folder {folder}"
    if not (folder / "config.json").is_file():
        raise ShrinkNetError(f"{where}: no config.json; expected a folder written by save_pretrained "
                             f"(config.json and model.safetensors)")
    cfg = _read_json(folder / "config.json", f"{where}/config.json")
    if cfg.get("auto_map"):
        raise ShrinkNetError(f"{where}: its config.json names code in the folder (auto_map: "
                             f"{', '.join(map(str, cfg['auto_map']))}), which shrinknet never runs; expected a model "
                             f"whose class transformers itself has")
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
        raise ShrinkNetError(f"{where}: expected config.json to name one class in 'architectures' (e.g. "
                             f"['GPT2LMHeadModel']), got {archs!r}")
    name = archs[0]
    kind = kind_of(name)
    if kind is None:
        raise ShrinkNetError(f"{where}: unknown architecture {name!r}; expected a causal LM, masked LM, sequence "
                             f"classification or image classification class of transformers")
    return cfg, name, kind


def kind_of(class_name: str) -> str | None:
    """Which of :data:`KINDS` the transformers class ``class_name`` is, or None."""
    _transformers()
    from transformers.models.auto import modeling_auto
    for kind, table in KINDS.items():
        names = getattr(modeling_auto, table, {})
        if any(class_name == v or (isinstance(v, (tuple, list)) and class_name in v) for v in names.values()):
            return kind
    return None


def _weights(folder: Path) -> None:
    """Refuse a folder whose weights are missing or only pickled."""
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for pat in PICKLED for p in folder.glob(pat))
    if pickled:
        raise ShrinkNetError(f"model folder {folder}: weights only as {', '.join(pickled[:3])} (pickle), which "
                             f"shrinknet never unpickles; expected model.safetensors (save_pretrained writes it)")
    raise ShrinkNetError(f"model folder {folder}: no weights; expected model.safetensors or "
                         f"model.safetensors.index.json beside config.json")


@dataclass
class Folder:
    """A loaded model folder: the model (eval mode), its class's kind, where it came from."""
    model: torch.nn.Module
    kind: str
    path: Path

    @property
    def language_model(self) -> bool:
        return self.kind in LANGUAGE_MODELS


def load_model(folder) -> Folder:
    """The model a folder holds, in the dtype it was saved in, in eval mode (see the module's text for
    what is refused)."""
    folder = Path(folder)
    cfg, name, kind = read_config(folder)
    _weights(folder)
    transformers = _transformers()
    cls = getattr(transformers, name, None)
    if cls is None:
        raise ShrinkNetError(f"model folder {folder}: unknown architecture {name!r}; expected a class transformers has")
    per_layer = "shapes" in (cfg.get(pretrained.KEY) or {})
    try:
        with _quiet(transformers):
            if per_layer:               # a folder shrinknet wrote with per-layer sizes: only it rebuilds that
                model = pretrained.from_pretrained(folder)
            else:
                model = cls.from_pretrained(folder, dtype="auto", use_safetensors=True, local_files_only=True,
                                            trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShrinkNetError(f"model folder {folder}: transformers could not load it ({first})"[:400]) from None
    return Folder(model.eval(), kind, folder)


@contextlib.contextmanager
def _quiet(transformers):
    """transformers' warnings and progress bars off (the command line prints its own lines)."""
    was, bars = transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(was)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def load_tokenizer(folder):
    """The folder's tokenizer, by ``AutoTokenizer`` and only if that runs no code from the folder."""
    folder = Path(folder)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ShrinkNetError(f"model folder {folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES[:4])}, ...), "
                             f"which a text file needs; expected the tokenizer saved beside the model "
                             f"(tokenizer.save_pretrained(folder)), or --data as an .npz / .safetensors file of "
                             f"token ids")
    tc = folder / "tokenizer_config.json"
    if tc.is_file() and _read_json(tc, f"model folder {folder}/tokenizer_config.json").get("auto_map"):
        raise ShrinkNetError(f"model folder {folder}: its tokenizer_config.json names code in the folder (auto_map), "
                             f"which shrinknet never runs; expected a tokenizer class transformers itself has")
    transformers = _transformers()
    try:
        with _quiet(transformers):
            return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShrinkNetError(f"model folder {folder}: its tokenizer could not be loaded ({first})"[:400]) from None


def max_positions(model) -> int | None:
    """The longest sequence the model's position embeddings allow (None: no such limit in the config)."""
    cfg = model.config
    for key in ("n_positions", "max_position_embeddings"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def text_windows(tokenizer, text: str, seq_len: int, kind: str, vocab_size: int, name: str = "--data"):
    """(inputs, targets) of the windows of ``seq_len`` tokens cut from ``text`` (see the module's text);
    every window is whole (the rest is dropped). A causal LM's targets are the next tokens (window
    ``i`` reads tokens ``i * seq_len ...`` and is labelled with the ones after them, the last included),
    a masked LM's the original tokens at the masked positions, -100 elsewhere."""
    with _quiet(_transformers()):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.as_tensor(ids, dtype=torch.long)
    if kind == "causal-lm":
        n = (len(ids) - 1) // seq_len
        if n < 1:
            raise ShrinkNetError(f"{name}: expected a text of at least --seq-len + 1 = {seq_len + 1} tokens, got "
                                 f"{len(ids)}")
        rows = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len)
        x = ids[rows]
        return {"input_ids": x, "attention_mask": torch.ones_like(x)}, ids[rows + 1]
    cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    wrap = cls is not None and sep is not None
    body = seq_len - 2 * wrap
    n = len(ids) // body if body > 0 else 0
    if n < 1:
        raise ShrinkNetError(f"{name}: expected a text of at least {max(body, 1)} tokens (--seq-len {seq_len}"
                             f"{' less [CLS] and [SEP]' if wrap else ''}), got {len(ids)}")
    x = ids[: n * body].reshape(n, body)
    if wrap:
        x = torch.cat([torch.full((n, 1), cls), x, torch.full((n, 1), sep)], 1)
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ShrinkNetError(f"{name}: a masked LM's text needs a tokenizer with a mask token, but this one has "
                             f"none; expected an .npz / .safetensors file with masked input_ids and labels")
    return mask_tokens(x, mask_id, vocab_size, special=[cls, sep] if wrap else [])


def mask_tokens(x: torch.Tensor, mask_id: int, vocab_size: int, special=(), seed: int = MASK_SEED):
    """Hugging Face's masked-LM corruption, seeded: each token but ``special`` ones is chosen with
    probability 0.15; a chosen one becomes ``mask_id`` (80 %), a random token (10 %) or stays (10 %).
    Returns ({"input_ids", "attention_mask"}, labels: the original token where chosen, else -100)."""
    rng = np.random.default_rng(seed)
    chosen = torch.as_tensor(rng.random(tuple(x.shape)) < MASK_SHARE)
    for s in special:
        chosen &= x != s
    labels = torch.where(chosen, x, torch.full_like(x, IGNORE_LABEL))
    how = torch.as_tensor(rng.random(tuple(x.shape)))
    random_ids = torch.as_tensor(rng.integers(0, vocab_size, tuple(x.shape)))
    out = torch.where(chosen & (how < 0.8), torch.full_like(x, mask_id), x)
    out = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, out)
    return {"input_ids": out, "attention_mask": torch.ones_like(out)}, labels


#: forward() arguments that are options, not data
_NOT_DATA = {"self", "labels", "return_dict", "output_attentions", "output_hidden_states", "use_cache",
             "past_key_values", "cache", "cache_position", "logits_to_keep", "return_loss", "kwargs"}


def input_names(model) -> list[str]:
    """The data arguments of the model's forward()."""
    params = inspect.signature(type(model).forward).parameters
    return [n for n, p in params.items() if n not in _NOT_DATA
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def read_arrays(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of an .npz (no pickles) or .safetensors file."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        from safetensors.torch import load_file
        return load_file(str(path))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShrinkNetError(f"{name} {path}: expected an .npz (no pickled objects) or .safetensors file of arrays, "
                             f"got one that cannot be read ({first})"[:400]) from None


def array_data(arrays: dict, model, kind: str, name: str = "--data"):
    """(inputs, labels as ``labels=`` takes them) from the arrays of a file, checked against the model's
    input names."""
    names = input_names(model)
    main = getattr(model, "main_input_name", names[0] if names else "input_ids")
    unknown = sorted(k for k in arrays if k != "labels" and k not in names)
    if unknown:
        raise ShrinkNetError(f"{name}: keys {unknown} are not inputs of {type(model).__name__}; expected its input "
                             f"names ({', '.join(n for n in names if n != 'inputs_embeds')}) and 'labels'")
    if main not in arrays:
        raise ShrinkNetError(f"{name}: expected the key {main!r} (the model's main input), got keys {sorted(arrays)}")
    n = int(arrays[main].shape[0]) if arrays[main].ndim else 0
    for k, v in arrays.items():
        if v.ndim == 0 or v.shape[0] != n:
            raise ShrinkNetError(f"{name}: expected every array to have {n} samples (as {main!r}), got {k!r} of "
                                 f"shape {tuple(v.shape)}")
    if n == 0:
        raise ShrinkNetError(f"{name}: expected at least one sample, got none")
    X = {}
    for k, v in arrays.items():
        if k == "labels":
            continue
        if v.dtype == torch.bool or not v.is_floating_point():
            X[k] = v.long()
        else:
            X[k] = v.float()
    if "labels" in arrays:
        labels = arrays["labels"]
        if labels.is_floating_point():
            raise ShrinkNetError(f"{name}: expected integer labels, got {labels.dtype}")
        labels = labels.long()
    elif kind == "causal-lm":                      # the inputs, padding ignored (DataCollatorForLanguageModeling)
        labels = X[main].clone()
        if "attention_mask" in X:
            labels[X["attention_mask"] == 0] = IGNORE_LABEL
    else:
        raise ShrinkNetError(f"{name}: expected the key 'labels' (a {kind.replace('-', ' ')} model's targets), got "
                             f"keys {sorted(arrays)}")
    return X, labels


def shift(labels: torch.Tensor) -> torch.Tensor:
    """A causal LM's labels as targets per position: ``T[:, t] = labels[:, t + 1]``, -100 at the end
    (what the model's own loss does inside, with ``labels=``)."""
    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_LABEL)], 1)


def load_data(path, folder: Folder, *, seq_len: int | None, tokenizer=None, name: str = "--data"):
    """(X, T) from a text file or an .npz / .safetensors file, for ``shrinknet.prune`` on the folder's model:
    X a dict of inputs, T the targets per sample or position (a causal LM's: the next token, -100 where
    there is none). ``tokenizer``: a function that returns the folder's tokenizer (called only for a
    text file)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise ShrinkNetError(f"{name}: expected a text file, or an .npz / .safetensors file of arrays, for a model "
                             f"folder, got {path} ({what})")
    model, kind = folder.model, folder.kind
    if path.suffix in (".npz", ".safetensors"):
        X, labels = array_data(read_arrays(path, name), model, kind, name)
        return X, (shift(labels) if kind == "causal-lm" else labels)
    if kind not in LANGUAGE_MODELS:
        raise ShrinkNetError(f"{name}: a text file is data for a language model, but {type(model).__name__} is a "
                             f"{kind.replace('-', ' ')} model; expected an .npz / .safetensors file with its "
                             f"inputs and 'labels'")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ShrinkNetError(f"{name} {path}: expected a UTF-8 text file, or an .npz / .safetensors file") from None
    return text_windows(tokenizer(), text, seq_len, kind, model.config.vocab_size, name)


def subset(X, T, n: int, seed: int = 0):
    """``n`` samples drawn without replacement (seeded, in their order); all of them for n = 0 or n >= N."""
    N = batch_.rows(X)
    if not n or n >= N:
        return X, T
    idx = torch.as_tensor(np.sort(np.random.default_rng(seed).permutation(N)[:n]))
    return batch_.take(X, idx), T[idx]


@torch.no_grad()
def quality(model, X, T, kind: str, batch: int = 32) -> dict:
    """Mean cross-entropy per labelled position (language models) or sample (classifiers), in nats;
    for a language model its exp, the perplexity, and for a classifier the accuracy. ``model``: the
    Hugging Face model or a GatedModel of it (``result.model``); computed in batches, in float32."""
    from .gating import GatedModel
    p = next(model.parameters(), None)
    device = p.device if p is not None else None
    total, count, right = 0.0, 0, 0
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for i in range(0, batch_.rows(X), batch):
            x, t = batch_.to(batch_.take(X, slice(i, i + batch)), device=device), T[i:i + batch]
            out = model(x) if isinstance(model, GatedModel) else batch_.call(model, x)
            z = batch_.logits_of(out).float()
            z, t = z.reshape(-1, z.shape[-1]), t.reshape(-1).to(z.device)
            live = t != IGNORE_LABEL
            z, t = z[live], t[live]
            total += float(torch.nn.functional.cross_entropy(z, t, reduction="sum"))
            count += int(t.numel())
            right += int((z.argmax(-1) == t).sum())
    finally:
        for m, was in modes:
            m.training = was
    loss = total / max(count, 1)
    if kind in LANGUAGE_MODELS:
        return {"loss": loss, "perplexity": math.exp(loss), "positions": count}
    return {"loss": loss, "accuracy": right / max(count, 1), "samples": count}


def char_tokenizer(chars, specials=()):
    """A character-level tokenizer a model folder can carry: ``transformers.PreTrainedTokenizerFast`` over a
    ``tokenizers`` WordLevel model whose tokens are ``chars`` (id ``i`` is ``chars[i]``), every character
    of a text one token, decoded by joining them. ``specials``: extra tokens after the characters, among
    "[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]" (set as the tokenizer's mask, cls, sep, pad, unk token).
    Save it beside the model with ``tokenizer.save_pretrained(folder)``."""
    _transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(chars)
    bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
    if bad or len(set(chars)) != len(chars):
        raise ShrinkNetError(f"chars: expected distinct single characters, got {(bad or chars)[:5]!r}")
    roles = {"[MASK]": "mask_token", "[CLS]": "cls_token", "[SEP]": "sep_token", "[PAD]": "pad_token",
             "[UNK]": "unk_token"}
    unknown = [t for t in specials if t not in roles]
    if unknown:
        raise ShrinkNetError(f"specials: expected tokens among {', '.join(roles)}, got {unknown}")
    vocab = {c: i for i, c in enumerate([*chars, *specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]" if "[UNK]" in specials else None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")   # one token per character
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{roles[t]: t for t in specials})


# ---- the smaller folder ----------------------------------------------------------------------------------
def write_folder(small, out: Path, source) -> tuple[Path, bool]:
    """Write ``small`` into ``out`` whole: into a temporary folder beside it first, then renamed over any
    earlier one (:func:`shrinknet.save_pretrained`, the input folder's tokenizer and generation config
    copied). Returns (the folder, whether a plain ``from_pretrained`` of its class reloads it; otherwise
    :func:`shrinknet.from_pretrained` does)."""
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet(_transformers()):
        save_pretrained(small, tmp, source=source)
    reloads = _plain_reload_fits(small, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out, reloads


def _plain_reload_fits(small, folder: Path) -> bool:
    """Whether the class the folder's config names, built from that config, has ``small``'s parameter shapes."""
    transformers = _transformers()
    try:
        cfg = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            probe = type(small)(cfg)
    except Exception:
        return False
    want = {k: tuple(v.shape) for k, v in small.state_dict().items()}
    return {k: tuple(v.shape) for k, v in probe.state_dict().items()} == want


__all__ = ["KINDS", "Folder", "char_tokenizer", "is_folder", "read_config", "load_model", "load_tokenizer", "load_data",
           "text_windows",
           "mask_tokens", "array_data", "shift", "subset", "quality", "write_folder", "max_positions", "input_names"]
