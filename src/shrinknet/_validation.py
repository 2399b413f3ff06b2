"""Input checks shared by the public calls.

Every check raises :class:`ShrinkNetError` with one message of the form
"<what>: expected X, got Y", so a user sees the problem, not a traceback deep
inside torch.
"""
from __future__ import annotations

import math

import numpy as np
import torch


# the error classes live in a module without torch, so the command line can catch them before torch loads
from ._errors import (MissingDependencyError, ShrinkNetError, ShrinkNetFileNotFoundError, ShrinkNetWriteError,  # noqa: E402,F401
                      check_path)


def require(module_name: str, extra: str, what: str | None = None):
    """Import and return the optional module ``module_name``.

    Parameters
    ----------
    module_name : str
        Dotted module name, e.g. ``"matplotlib.figure"``.
    extra : str
        The shrinknet extra that installs it, e.g. ``"paper"``.
    what : str, optional
        What needs it, for the message (e.g. ``"the MNIST subset"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        If the module (or a package it needs) cannot be imported; the message names
        ``pip install 'shrinknet[<extra>]'``.
    """
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None) or module_name.split(".")[0]
        need = f"{what} needs" if what else "this needs"
        err = MissingDependencyError(f"{need} the optional package {missing!r}, which is not installed: "
                                     f"pip install 'shrinknet[{extra}]'")
        err.name = missing
        raise err from None


def non_finite_score(criterion: str, layer: int, unit: int) -> ShrinkNetError:
    """The error for a criterion's non-finite score of an active neuron (the loop's check and the
    serial oracle's say it alike)."""
    return ShrinkNetError(f"criterion {criterion!r} gave a non-finite score to active neuron "
                          f"(layer {layer}, unit {unit})")


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of float tensor t is finite. Its least and largest entries tell: NaN
    spreads to both and an infinity is one of them; one reducing pass that allocates nothing
    (isfinite(t).all() first writes a bool per entry: 20x as long on a 4,000 x 400 input)."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def as_tensor(a, name: str, dtype=torch.float32, device=None) -> torch.Tensor:
    """Convert an array-like to a float tensor, refusing empty or non-finite data."""
    if a is None:
        raise ShrinkNetError(f"{name}: expected an array, got None")
    try:
        t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    except (TypeError, ValueError) as e:
        raise ShrinkNetError(f"{name}: expected a numeric array, got {type(a).__name__} ({e})") from None
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                   torch.uint8, torch.bool)):
        raise ShrinkNetError(f"{name}: expected a numeric array, got dtype {t.dtype}")
    if t.is_meta:
        raise ShrinkNetError(f"{name}: expected values, got a tensor on the meta device (shapes without values)")
    t = t.to(dtype=dtype, device=device)
    if t.numel() == 0:
        raise ShrinkNetError(f"{name}: expected a non-empty array, got shape {tuple(t.shape)}")
    if not all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise ShrinkNetError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return t


def check_inputs(X, n_in: int, dtype=torch.float32, device=None, name: str = "X") -> torch.Tensor:
    """X must be (N, n_in) with N >= 1."""
    X = as_tensor(X, name, dtype, device)
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ShrinkNetError(f"{name}: expected shape (N, {n_in}), got {tuple(X.shape)}")
    return X


#: a label that marks a position to ignore (Hugging Face's convention, e.g. padding in a sequence)
IGNORE_LABEL = -100


def check_targets(T, n_samples: int, n_out, dtype=torch.float32, device=None, name: str = "T") -> torch.Tensor:
    """Targets as a float tensor shaped like the model's output, (N, n_out) or (N, ..., n_out).

    ``n_out``: the number of outputs, or the shape of one sample's output (e.g. (positions,
    classes) for a sequence model). Accepted: an array of that shape; an (N,) array when
    n_out == 1; or integer class labels of shape (N, ...) (the output shape without its last axis)
    when there are several outputs, which are one-hot encoded. For outputs with positions, a
    label of -100 marks a position to ignore (it becomes a row of zeros: no loss, no accuracy)."""
    if T is None:
        raise ShrinkNetError(f"{name}: expected targets, got None (None only with X a DataLoader of (X, T) batches)")
    shape = (n_out,) if isinstance(n_out, (int, np.integer)) else tuple(int(v) for v in n_out)
    C = shape[-1]
    want = (n_samples, *shape)
    raw = T.detach().cpu().numpy() if isinstance(T, torch.Tensor) else np.asarray(T)
    labels = want[:-1]
    if C > 1 and raw.shape == labels:
        if not np.issubdtype(raw.dtype, np.integer):
            raise ShrinkNetError(f"{name}: expected shape {want} or integer labels of shape {labels}, "
                                 f"got shape {raw.shape} of dtype {raw.dtype}")
        ignored = (raw == IGNORE_LABEL) if len(shape) > 1 else np.zeros(raw.shape, bool)
        live = raw[~ignored]
        if live.size == 0:
            raise ShrinkNetError(f"{name}: expected at least one labelled position, got only -100 (ignored) labels")
        if live.size and (live.min() < 0 or live.max() >= C):
            extra = " (or -100 for ignored positions)" if len(shape) > 1 else ""
            raise ShrinkNetError(f"{name}: expected labels in [0, {C}){extra}, got range [{live.min()}, {live.max()}]")
        onehot = np.zeros((*raw.shape, C), dtype=np.float32)
        idx = np.nonzero(~ignored)
        onehot[(*idx, raw[idx])] = 1.0
        raw = onehot
    elif raw.ndim == 1 and C > 1 and len(shape) == 1:
        raise ShrinkNetError(f"{name}: expected {n_samples} labels (one per sample), got {raw.shape[0]}")
    elif raw.ndim == 1 and shape == (1,):
        raw = raw[:, None]
    t = as_tensor(raw, name, dtype, device)
    if tuple(t.shape) != want:
        if raw.ndim >= 1 and raw.shape[0] != n_samples:
            raise ShrinkNetError(f"{name}: expected {n_samples} samples (one per input), got {raw.shape[0]} "
                                 f"(shape {tuple(raw.shape)})")
        alt = f" or integer labels of shape {labels}" if len(shape) > 1 else ""
        raise ShrinkNetError(f"{name}: expected shape {want}{alt}, got {tuple(t.shape)}")
    return t


def check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise ShrinkNetError(f"unknown {what} {value!r}: expected one of {', '.join(sorted(choices))}")
    return value


def check_fraction(value, name: str, low: float = 0.0, high: float = 1.0):
    if value is None:
        return None
    try:
        v = float(value) if not isinstance(value, (bool, str, bytes)) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not (low <= v <= high) or not np.isfinite(v):
        raise ShrinkNetError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return v


#: the floating-point types every path computes in (the compiled kernel, the closed-form derivatives)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_dtype(dtype, name: str = "dtype", allowed: dict | None = None):
    """``dtype`` as a torch dtype: one of ``allowed`` ({name: dtype}; default torch.float32 / torch.float64)
    or its name; None stays None."""
    allowed = DTYPES if allowed is None else allowed
    if dtype is None:
        return None
    d = allowed.get(dtype) if isinstance(dtype, str) else dtype
    if d not in allowed.values():
        names = [f"torch.{k}" for k in allowed]
        raise ShrinkNetError(f"{name}: expected {', '.join(names[:-1])} or {names[-1]} (or their names), got {dtype!r}")
    return d


def check_device(device, name: str = "device"):
    """``device`` as a torch.device that this machine has; None stays None."""
    if device is None:
        return None
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ShrinkNetError(f"{name}: expected a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if d.type == "meta":
        raise ShrinkNetError(f"{name}: expected a device that computes, such as 'cpu' or 'cuda', got {device!r} "
                             f"(meta tensors have shapes but no values)")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ShrinkNetError(f"{name}: expected a device this machine has, got {device!r}, but torch sees no CUDA "
                             f"GPU here (torch.cuda.is_available() is False); use 'cpu'")
    try:
        torch.empty(0, device=d)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise ShrinkNetError(f"{name}: expected a device this machine has, got {device!r} "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return d


#: dtypes a model may be stored in that shrinknet computes in float32 (the oracle's kernel, the
#: closed-form derivatives and NumPy take float32 and float64 only; half precision would also round
#: the small changes in error that the criteria compare)
HALF = (torch.float16, torch.bfloat16)


def working_dtype(model, dtype=None):
    """The dtype to compute in: ``dtype`` where given (checked), else the model's (its first floating
    parameter's), float32 for a bfloat16 / float16 model, float32 for one without parameters."""
    if dtype is not None:
        return check_dtype(dtype)
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    return torch.float32 if p is None or p.dtype in HALF else p.dtype


def unwrap_compiled(model):
    """The module that ``torch.compile`` wrapped (an OptimizedModule's ``_orig_mod``), which shrinknet
    copies and gates itself; any other model as it is."""
    while type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None),
                                                                   torch.nn.Module):
        model = model._orig_mod
    return model


def strip_compiled(model):
    """``model`` with every ``torch.compile``'d submodule replaced, in place, by the module it wraps;
    for shrinknet's own copies (a compiled backward cannot be taken twice, as second-order criteria do)."""
    for name, child in list(model.named_children()):
        inner = unwrap_compiled(child)
        if inner is not child:
            setattr(model, name, inner)
        strip_compiled(inner)
    return model


def check_materialized(model, name: str = "model") -> None:
    """Refuse a model with a parameter or buffer on the meta device (shapes without values, e.g. one
    built under ``torch.device("meta")`` or by ``init_empty_weights`` and never loaded)."""
    for n, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:
            raise ShrinkNetError(f"{name}: expected weights with values, got {n} on the meta device (shapes without "
                                 f"values): load the weights first, e.g. model.to_empty(device='cpu') then "
                                 f"load_state_dict(...)")
