"""Causal self-attention written by hand, as in nanoGPT, with heads that can be removed.

nanoGPT's ``CausalSelfAttention`` (one ``nn.Linear`` ``c_attn`` giving q, k and v side by side, an
``n_head`` / ``n_embd`` pair, ``c_proj``) cannot lose a head: it splits ``c_attn``'s output at
``n_embd`` and sizes each head as ``C // n_head`` from its *input* width, so with fewer heads the
split and the reshapes no longer fit. :class:`CausalSelfAttention` computes the same thing with the
head size kept as a number of its own (``head_dim``): its ``c_attn`` holds ``3 * n_head * head_dim``
rows (q, k, v blocks, each head-major) and ``c_proj`` reads the ``n_head * head_dim`` head-major
context, so a head is a block of rows of ``c_attn`` in each of q, k and v and a block of columns of
``c_proj``, as for GPT-2.

The model is found by structure, not by its class's origin: a module with ``c_attn`` and ``c_proj``
``nn.Linear`` modules, integer ``n_head`` and ``n_embd``, ``c_attn`` mapping ``n_embd`` to ``3 *
n_embd`` and ``c_proj`` ``n_embd`` to ``n_embd``. :func:`replace_causal_attention` swaps each such
module for this one *after checking* that the two give the same output on random input, so a module
that only looks like nanoGPT's (another mask, another scaling) is refused by name rather than changed.

    >>> replace_causal_attention(gpt)         # in place; returns the names swapped
    ['transformer.h.0.attn', 'transformer.h.1.attn']
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import ShrinkNetError

__all__ = ["CausalSelfAttention", "looks_like_nanogpt", "replace_causal_attention"]

#: relative tolerance of the check that a swapped-in module computes what the original did
SWAP_RTOL = 1e-5


class CausalSelfAttention(nn.Module):
    """Drop-in replacement for nanoGPT's ``CausalSelfAttention`` whose heads can be removed.

    ``forward(x)`` with ``x`` of shape (B, T, n_embd) returns (B, T, n_embd): causal softmax attention
    scaled by ``1/sqrt(head_dim)``, dropout ``dropout`` on the attention weights in training mode, then
    ``resid_dropout(c_proj(context))``, exactly as nanoGPT computes it (its flash path).

    Parameters
    ----------
    n_embd : int
        Width of the input and output (the residual stream); never changed.
    n_head : int
        Number of heads.
    head_dim : int, optional
        Width of one head (default ``n_embd // n_head``); kept when heads are removed.
    bias : bool
        Whether ``c_attn`` and ``c_proj`` have a bias.
    dropout : float
        Dropout on the attention weights and on the output, in training mode.

    Attributes
    ----------
    c_attn : nn.Linear
        ``n_embd`` -> ``3 * n_head * head_dim``: the q, k and v blocks, each head-major.
    c_proj : nn.Linear
        ``n_head * head_dim`` -> ``n_embd``.
    attn_dropout, resid_dropout : nn.Dropout
    """

    #: read by :mod:`shrinknet.blocks`: this module's heads are the "nanogpt" attention style
    shrinknet_style = "nanogpt"

    def __init__(self, n_embd: int, n_head: int, head_dim: int | None = None, bias: bool = True,
                 dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        for v, name in ((n_embd, "n_embd"), (n_head, "n_head")):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ShrinkNetError(f"{name}: expected a positive integer, got {v!r}")
        if head_dim is None:
            if n_embd % n_head:
                raise ShrinkNetError(f"n_head: expected a divisor of n_embd={n_embd} (or give head_dim), got {n_head}")
            head_dim = n_embd // n_head
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0:
            raise ShrinkNetError(f"head_dim: expected a positive integer, got {head_dim!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ShrinkNetError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        self.n_embd, self.n_head, self.head_dim, self.dropout = n_embd, n_head, head_dim, float(dropout)
        self.c_attn = nn.Linear(n_embd, 3 * n_head * head_dim, bias=bias, device=device, dtype=dtype)
        self.c_proj = nn.Linear(n_head * head_dim, n_embd, bias=bias, device=device, dtype=dtype)
        self.attn_dropout = nn.Dropout(self.dropout)
        self.resid_dropout = nn.Dropout(self.dropout)

    @classmethod
    def from_nanogpt(cls, m: nn.Module) -> "CausalSelfAttention":
        """This module built around ``m``'s own ``c_attn``, ``c_proj`` and dropout modules (shared, not
        copied), in ``m``'s training mode. ``m`` must pass :func:`looks_like_nanogpt`."""
        why = _mismatch(m)
        if why:
            raise ShrinkNetError(f"m: expected a nanoGPT-style CausalSelfAttention, got {type(m).__name__} ({why})")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.n_embd, new.n_head = int(m.n_embd), int(m.n_head)
        new.head_dim = new.n_embd // new.n_head
        new.dropout = float(getattr(m, "dropout", 0.0) or 0.0)
        new.c_attn, new.c_proj = m.c_attn, m.c_proj
        new.attn_dropout = getattr(m, "attn_dropout", None) or nn.Dropout(new.dropout)
        new.resid_dropout = getattr(m, "resid_dropout", None) or nn.Dropout(new.dropout)
        return new.train(m.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_embd:
            raise ShrinkNetError(f"x: expected shape (batch, time, {self.n_embd}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        H, d = self.n_head, self.head_dim
        q, k, v = (t.view(B, T, H, d).transpose(1, 2) for t in self.c_attn(x).split(H * d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, H * d)))

    def extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}, head_dim={self.head_dim}"


def _mismatch(m: nn.Module) -> str:
    """Why ``m`` is not shaped like nanoGPT's attention ('' if it is)."""
    a, p = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
    if not (isinstance(a, nn.Linear) and isinstance(p, nn.Linear)):
        return "no c_attn / c_proj nn.Linear modules"
    E, H = getattr(m, "n_embd", None), getattr(m, "n_head", None)
    if type(E) is not int or type(H) is not int or H <= 0 or E % H:
        return "no integer n_embd divisible by an integer n_head"
    if (a.in_features, a.out_features) != (E, 3 * E) or (p.in_features, p.out_features) != (E, E):
        return f"c_attn {a.in_features}->{a.out_features} and c_proj {p.in_features}->{p.out_features}, " \
               f"expected {E}->{3 * E} and {E}->{E}"
    return ""


def looks_like_nanogpt(m: nn.Module) -> bool:
    """Whether ``m`` is shaped like nanoGPT's ``CausalSelfAttention`` (and is not already this module)."""
    return not isinstance(m, CausalSelfAttention) and not _mismatch(m)


@torch.no_grad()
def _same_output(old: nn.Module, new: CausalSelfAttention) -> float:
    """Max |old(x) - new(x)| relative to max |old(x)| on seeded random input, both in eval mode."""
    w = new.c_attn.weight
    T = 8
    mask = getattr(old, "bias", None)          # nanoGPT's slow path keeps a (1, 1, block, block) causal mask
    if isinstance(mask, torch.Tensor) and mask.ndim == 4:
        T = min(T, int(mask.shape[-1]))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, T, new.n_embd, generator=gen).to(device=w.device, dtype=w.dtype)
    was = old.training, new.training
    old.eval(), new.eval()
    try:
        want = old(x)
        got = new(x)
    finally:
        old.train(was[0]), new.train(was[1])
    if isinstance(want, tuple):
        want = want[0]
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        return float("inf")
    return float((want - got).abs().max()) / (float(want.abs().max()) + 1e-12)


def replace_causal_attention(model: nn.Module, *, strict: bool = True) -> list[str]:
    """Swap every nanoGPT-style causal self-attention inside ``model`` for :class:`CausalSelfAttention`,
    in place, after checking that each computes the same output as the module it replaces.

    Parameters
    ----------
    model : nn.Module
        Changed in place (its modules of that shape, found by :func:`looks_like_nanogpt`).
    strict : bool
        Raise if a module of that shape computes something else (default); False leaves such a module
        as it is (the pruning code does so: its heads are then refused only if they are asked for).

    Returns
    -------
    list of str
        The swapped modules' names, in module order.

    Raises
    ------
    ShrinkNetError
        If ``strict`` and a module shaped like nanoGPT's computes something else (then nothing is swapped).
    """
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    found = [(n, m) for n, m in model.named_modules() if n and looks_like_nanogpt(m)]
    new = {}
    for name, m in found:                        # check all first: a refused one leaves the model unchanged
        swap = CausalSelfAttention.from_nanogpt(m)
        diff = _same_output(m, swap)
        if not diff <= SWAP_RTOL:
            if not strict:
                continue
            raise ShrinkNetError(
                f"model: {name!r} ({type(m).__name__}) is shaped like nanoGPT's CausalSelfAttention (c_attn, c_proj, "
                f"n_head, n_embd) but computes something else (relative difference {diff:.3g} from causal softmax "
                f"attention scaled by 1/sqrt(head size)); its heads cannot be units: leave them out of units")
        new[name] = swap
    for name, swap in new.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, swap)
    return list(new)


def as_template(model: nn.Module, names) -> None:
    """Put :class:`CausalSelfAttention` where a saved model had it (``names``), in place of the template's
    nanoGPT-style modules (their weights are overwritten by the load; no output check)."""
    for name in names:
        m = model.get_submodule(str(name))
        if isinstance(m, CausalSelfAttention):
            continue
        if _mismatch(m):
            raise ShrinkNetError(f"template: module {name!r} is not a nanoGPT-style CausalSelfAttention "
                                 f"({_mismatch(m)})")
        parent, _, child = str(name).rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, CausalSelfAttention.from_nanogpt(m))

