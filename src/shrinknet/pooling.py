"""Max pooling as the maximum of strided views, in the passes that build no autograd graph.

On a CPU, ``torch.nn.functional.max_pool2d`` on an ordinary (NCHW) tensor computes the int64
index of every maximum, under ``no_grad`` too, and is memory-bound: on a small CNN it takes two
thirds of a brute-force step's time (docs/PERFORMANCE.md). For non-overlapping windows (kernel size
equal to the stride, no padding, no dilation, ``ceil_mode`` off) the pooled value is the maximum of
the strided views of the input, an elementwise ``torch.maximum`` that gives the very same
numbers (a maximum does not depend on the order it is taken in; NaN propagates as in
``max_pool2d``; only the sign of a zero may differ where a window holds both 0.0 and -0.0)
several times faster. While :func:`strided_max_pooling` is on, such ``nn.MaxPool2d``
modules of a model pool that way in passes without autograd (every forward pass of a
:class:`~shrinknet.gating.GatedModel` and the oracle's recordings and replays); any other pooling runs
as it is.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def strided_max(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """``F.max_pool2d(x, (kh, kw))`` (stride = kernel, no padding) as the maximum of strided views: over
    the kh rows of each window first (views whose rows stay contiguous, the fast case for an elementwise
    maximum), then over the kw columns.

    Parameters
    ----------
    x : (N, C, H, W) or (C, H, W) tensor, H >= kh and W >= kw
    kh, kw : the window's height and width (and stride)

    Returns
    -------
    (..., H // kh, W // kw) tensor, as ``max_pool2d`` gives it (a last partial window dropped)
    """
    if x.shape[-2] < kh or x.shape[-1] < kw:
        raise ValueError(f"x: expected at least a {kh} x {kw} window, got {tuple(x.shape)}")
    H, W = x.shape[-2] // kh * kh, x.shape[-1] // kw * kw
    x = x[..., :H, :W]
    r = x[..., 0::kh, :]
    for i in range(1, kh):
        r = torch.maximum(r, x[..., i::kh, :])
    c = r[..., 0::kw]
    for j in range(1, kw):
        c = torch.maximum(c, r[..., j::kw])
    return c if kh * kw > 1 else c.clone()


def _eligible(m: nn.Module) -> tuple[int, int] | None:
    """(kh, kw) where ``m`` is an nn.MaxPool2d with non-overlapping windows, else None."""
    if type(m) is not nn.MaxPool2d or m.return_indices or m.ceil_mode:
        return None
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    if k != s or _pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1):
        return None
    return k


def pools(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that :func:`strided_max_pooling` pools by :func:`strided_max`: every
    ``nn.MaxPool2d`` (the class itself, not a subclass, whose forward may differ) with non-overlapping
    windows."""
    return [m for m in model.modules() if _eligible(m) is not None]


def _forward(orig, k, *args, **kwargs):
    """A patched module's forward: :func:`strided_max` where it gives max_pool2d's numbers, else ``orig``
    (which also says what is wrong with an input it refuses)."""
    x = args[0] if args else kwargs.get("input")
    plain = (len(args) + len(kwargs) == 1 and isinstance(x, torch.Tensor) and x.ndim in (3, 4)
             and x.layout == torch.strided and not x.is_quantized and x.shape[-2] >= k[0] and x.shape[-1] >= k[1])
    if torch.is_grad_enabled() or not plain:
        return orig(*args, **kwargs)
    return strided_max(x, *k)


def is_patched(m: nn.Module) -> bool:
    """Whether ``m``'s ``forward`` is :func:`strided_max_pooling`'s (a copy taken while it was on keeps it)."""
    f = m.__dict__.get("forward")
    return isinstance(f, functools.partial) and f.func is _forward


def unpatch(model: nn.Module) -> nn.Module:
    """``model`` with every module's :func:`strided_max_pooling` forward removed (for copies)."""
    for m in model.modules():
        if is_patched(m):
            del m.__dict__["forward"]
    return model


@contextlib.contextmanager
def strided_max_pooling(modules):
    """While on, the eligible ``nn.MaxPool2d`` modules among ``modules`` (a model: its modules, or a list
    from :func:`pools`) pool by :func:`strided_max` where no autograd graph is built (a maximum's
    gradient splits ties where ``max_pool2d``'s picks one element, so a pass with grad enabled runs
    as it is). Modules whose ``forward`` is already patched (by this, or by the oracle's recording
    and replay, which then call this one where it was on first) are left alone; hooks still run."""
    if isinstance(modules, nn.Module):
        modules = pools(modules)
    patched = []
    try:
        for m in modules:
            k = _eligible(m)
            if k is None or "forward" in m.__dict__:
                continue
            m.forward = functools.partial(_forward, m.forward, k)
            patched.append(m)
        yield
    finally:
        for m in patched:
            del m.__dict__["forward"]
