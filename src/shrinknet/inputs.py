"""Inputs as models take them: one tensor, a tuple of tensors, or a dict of tensors, batched on dim 0.

A plain tensor is passed as ``model(X)``, a tuple as ``model(*X)`` and a dict as ``model(**X)`` (e.g.
``{"input_ids": ..., "attention_mask": ...}`` for a Hugging Face text model). Floating-point tensors
take the model's dtype; integer and boolean tensors (token ids, masks) keep theirs, since casting a
token id to float breaks the embedding lookup. Every function here works on all three forms, so
the rest of the package slices, repeats and calls a batch without asking which form it has.

A model's output is read the same way: a tensor as it is, a Hugging Face ``ModelOutput`` (or any
mapping) by its ``logits``, a tuple by its first element.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from ._validation import ShrinkNetError, all_finite


def _map(fn, X):
    if isinstance(X, dict):
        return {k: fn(v) for k, v in X.items()}
    if isinstance(X, tuple):
        return tuple(fn(v) for v in X)
    return fn(X)


def leaves(X) -> list[torch.Tensor]:
    """The tensors of a batch, in order."""
    if isinstance(X, dict):
        return list(X.values())
    if isinstance(X, tuple):
        return list(X)
    return [X]


def _label(name: str, X, key) -> str:
    if isinstance(X, dict):
        return f"{name}[{key!r}]"
    return f"{name}[{key}]" if isinstance(X, tuple) else name


def check(X, name: str = "X", dtype=torch.float32, device=None):
    """``X`` as a batch: a tensor (or array-like, e.g. a nested list of numbers), a tuple of them or a
    list of torch tensors (passed as positional arguments), or a dict of them, all with the same
    number of samples on dim 0. Float and uint8 (image) tensors go to ``dtype``, every tensor to
    ``device``; other integer and boolean tensors (token ids, masks) keep their dtype. Raises,
    naming the entry, on anything else."""
    if X is None:
        raise ShrinkNetError(f"{name}: expected a tensor, a tuple or a dict of tensors, got None")
    if isinstance(X, list) and X and all(isinstance(v, torch.Tensor) for v in X):
        X = tuple(X)
    if isinstance(X, Mapping) and not isinstance(X, dict):
        X = dict(X)                      # e.g. a tokenizer's BatchEncoding
    if isinstance(X, dict):
        if not X or not all(isinstance(k, str) for k in X):
            raise ShrinkNetError(f"{name}: expected a dict of tensors keyed by argument names, got keys {list(X)}")
        items = list(X.items())
    elif isinstance(X, tuple):
        if not X:
            raise ShrinkNetError(f"{name}: expected at least one tensor in the tuple, got none")
        items = list(enumerate(X))
    else:
        return _tensor(X, name, dtype, device)
    out = {k: _tensor(v, _label(name, X, k), dtype, device) for k, v in items}
    k0, n = items[0][0], out[items[0][0]].shape[0]
    for k, t in out.items():
        if t.shape[0] != n:
            raise ShrinkNetError(f"{_label(name, X, k)}: expected {n} samples on dim 0 like "
                                 f"{_label(name, X, k0)}, got {t.shape[0]} (shape {tuple(t.shape)})")
    return out if isinstance(X, dict) else tuple(out.values())


def _tensor(a, name, dtype, device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
    else:
        try:
            t = torch.as_tensor(np.asarray(a))
        except (TypeError, ValueError) as e:
            raise ShrinkNetError(f"{name}: expected a numeric array, got {type(a).__name__} ({e})") from None
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INTEGER):
        raise ShrinkNetError(f"{name}: expected a float, integer or boolean tensor, got dtype {t.dtype}")
    if t.ndim == 0 or t.numel() == 0:
        raise ShrinkNetError(f"{name}: expected a non-empty batch (N, ...), got shape {tuple(t.shape)}")
    if t.is_meta:
        raise ShrinkNetError(f"{name}: expected values, got a tensor on the meta device (shapes without values)")
    # uint8 is how images are stored: pixels take the model's dtype; other integers are ids and masks
    cast = t.is_floating_point() or t.dtype == torch.uint8
    t = t.to(dtype=dtype, device=device) if cast else t.to(device=device)
    if t.is_floating_point() and not all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise ShrinkNetError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return t


_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


def rows(X) -> int:
    """Number of samples."""
    return int(leaves(X)[0].shape[0])


def take(X, index):
    """Samples ``index`` (a slice, or an index tensor) of every tensor."""
    return _map(lambda t: t[index], X)


def repeat(X, c: int):
    """The batch repeated c times along dim 0 (copy-major: [X, X, ..., X])."""
    return _map(lambda t: t.repeat(c, *([1] * (t.ndim - 1))), X)


def call(model, X):
    """model(X), model(*X) or model(**X)."""
    if isinstance(X, dict):
        return model(**X)
    if isinstance(X, tuple):
        return model(*X)
    return model(X)


def plain(X):
    """Tensors made under ``torch.inference_mode()`` cloned (they have no version counter, which the
    caches read); others as they are."""
    return _map(lambda t: t.clone() if isinstance(t, torch.Tensor) and t.is_inference() else t, X)


def to(X, dtype=None, device=None):
    """Float tensors to ``dtype``, all to ``device``."""
    return _map(lambda t: t.to(dtype=dtype, device=device) if t.is_floating_point() else t.to(device=device), X)


def clone(X):
    """A detached copy (so a kept example does not hold on to the whole batch's storage)."""
    return _map(lambda t: t.detach().clone(), X)


def sample_shapes(X):
    """Shape of one sample per tensor (the same structure, tuples of ints)."""
    return _map(lambda t: tuple(t.shape[1:]), X)


def describe(X) -> str:
    """Shapes and dtypes, for error messages."""
    if isinstance(X, dict):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape)} {v.dtype}" for k, v in X.items()) + "}"
    if isinstance(X, tuple):
        return "(" + ", ".join(f"{tuple(v.shape)} {v.dtype}" for v in X) + ")"
    return f"shape {tuple(X.shape)}"


def logits_of(out) -> torch.Tensor:
    """The tensor a model's output stands for: itself, ``out.logits`` (a Hugging Face output), or
    the first element of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    z = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(z, torch.Tensor):
        return z
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ShrinkNetError(f"model: expected its output to be a tensor, an output with 'logits' or a tuple "
                         f"starting with a tensor, got {type(out).__name__}")


def is_loader(X) -> bool:
    """Whether X is a re-iterable of (X, T) batches (a DataLoader, a list of pairs) rather than a batch."""
    if isinstance(X, (list, tuple)) and X and all(isinstance(b, (tuple, list)) for b in X):
        # a list (or tuple) of (X, T) pairs of batches, not a nested list of numbers (samples of two
        # features) nor a tuple of tensors (one batch of several inputs); items of another length made
        # of tensors are batches too, so that the stream names what is wrong with them
        pairs = isinstance(X, list) and all(len(b) == 2 and all(
            isinstance(v, (torch.Tensor, np.ndarray, Mapping, tuple, list)) for v in b) for b in X)
        return pairs or all(len(b) >= 2 and all(isinstance(v, (torch.Tensor, np.ndarray, Mapping)) for v in b)
                            for b in X)
    # (an object NumPy can read, e.g. a pandas DataFrame, is a batch, whatever it iterates over)
    return (not isinstance(X, (torch.Tensor, np.ndarray, Mapping, tuple, str, bytes)) and hasattr(X, "__iter__")
            and not hasattr(X, "__array__"))


class Stream:
    """The data of a run as a re-iterable of (X, T) batches (a ``torch.utils.data.DataLoader``), each
    checked and converted as it is read by ``convert(X, T, k)`` (k: the batch's index). Nothing is
    kept: every pass over the data reads the batches again."""

    def __init__(self, source, convert, name: str = "X"):
        if isinstance(source, Iterator):
            raise ShrinkNetError(f"{name}: expected a re-iterable of (X, T) batches (a DataLoader, a list), got an "
                                 f"iterator ({type(source).__name__}), which can be read only once")
        self.source, self.convert, self.name = source, convert, name
        self.on_batch = None          # called with each batch's index as it is read (a progress display)
        try:
            self.n_batches = len(source)
        except TypeError:
            self.n_batches = None

    def __iter__(self):
        empty = True
        for k, item in enumerate(self.source):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                what = (f"{type(item).__name__} of {len(item)} item{'s' * (len(item) != 1)}"
                        if isinstance(item, (tuple, list)) else type(item).__name__)
                extra = (" (what follows X and T, e.g. sample weights, is not taken: leave it out of the batches)"
                         if isinstance(item, (tuple, list)) and len(item) > 2 else "")
                raise ShrinkNetError(f"{self.name}: expected batches of (X, T) pairs, got {what} as batch {k}{extra}")
            empty = False
            if self.on_batch is not None:
                self.on_batch(k)
            yield self.convert(item[0], item[1], k)
        if empty:
            raise ShrinkNetError(f"{self.name}: expected at least one (X, T) batch, got none")


def chunks(X, T, rows: int):
    """(X, T) in pieces of at most ``rows`` samples: slices of tensors, or a stream's batches, cut."""
    if isinstance(X, Stream):
        for Xb, Tb in X:
            n = Tb.shape[0]
            for i in range(0, n, rows):
                yield (Xb, Tb) if n <= rows else (take(Xb, slice(i, i + rows)), Tb[i:i + rows])
        return
    for i in range(0, rows_of(X, T), rows):
        yield take(X, slice(i, i + rows)), T[i:i + rows]


def rows_of(X, T) -> int:
    return int(T.shape[0]) if T is not None else rows(X)


__all__ = ["Data", "Stream", "call", "chunks", "is_loader", "check", "clone", "describe", "leaves", "logits_of", "plain", "repeat", "rows", "sample_shapes",
           "take", "to"]


class Data:
    """One run's evaluation data as the lower layers read it: ``X`` (inputs, or a :class:`Stream` of
    (X, T) batches with ``T`` None) and ``T``; what the oracle and the derivatives take instead of the
    pruning context."""

    __slots__ = ("X", "T")

    def __init__(self, X, T):
        self.X, self.T = X, T

    @property
    def streaming(self) -> bool:
        """Whether the data are read batch by batch from a loader (nothing kept between passes)."""
        return isinstance(self.X, Stream)

    def chunks(self, rows: int):
        """(X, T) in pieces of at most ``rows`` samples."""
        return chunks(self.X, self.T, rows)

    def rows(self, per_pass: int) -> int:
        """Samples in memory, or where they stream from a loader, ``per_pass`` (a pass's worth)."""
        return per_pass if self.streaming else int(self.T.shape[0])
