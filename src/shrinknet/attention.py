"""Multi-head attention whose heads can be removed.

``torch.nn.MultiheadAttention`` cannot lose a head: its head count is tied to its embedding width
(``head_dim = embed_dim // num_heads``), and it multiplies the concatenated heads by
``out_proj.weight`` inside a functional call, so a hook on ``out_proj`` never fires and no gate can
sit on a head's context. :class:`MultiheadAttention` computes the same thing with separate
``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj`` Linear modules and calls ``out_proj`` as a
module on the head-major context, so that

* a forward pre-hook on ``out_proj`` sees every head's context (columns
  ``h*head_dim:(h+1)*head_dim`` for head ``h``) and can gate or record it, and
* :meth:`MultiheadAttention.keep_heads` removes heads physically, with ``head_dim`` (and so the
  1/sqrt(head_dim) scaling) unchanged.

    >>> attn = MultiheadAttention.from_torch(model.encoder.layers[0].self_attn)
    >>> attn.keep_heads([0, 2, 3])          # drop head 1 in place
    >>> replace_torch_attention(model)      # or swap every nn.MultiheadAttention of a model
    ['encoder.layers.0.self_attn', 'encoder.layers.1.self_attn']
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import ShrinkNetError

__all__ = ["MultiheadAttention", "replace_torch_attention"]


class MultiheadAttention(nn.Module):
    """Drop-in replacement for ``torch.nn.MultiheadAttention`` whose heads can be removed.

    Same constructor arguments, ``forward`` signature, return value and numerics as torch's module
    (built without ``add_bias_kv`` / ``add_zero_attn``, which are refused). Usually made with
    :meth:`from_torch` from a trained module.

    Parameters
    ----------
    embed_dim : int
        Width of the query and of the output.
    num_heads : int
        Number of heads; must divide ``embed_dim``.
    dropout : float
        Dropout probability on the attention weights, applied in training mode only.
    bias : bool
        Whether the four projections have a bias.
    add_bias_kv, add_zero_attn : bool
        Only False is supported (accepted so that torch's call signature works).
    kdim, vdim : int, optional
        Widths of key and value (default ``embed_dim``).
    batch_first : bool
        Inputs and output are (N, L, E) if True, else (L, N, E).
    device, dtype : optional
        Where and in which precision the parameters are made.

    Attributes
    ----------
    q_proj, k_proj, v_proj : nn.Linear
        ``embed_dim`` / ``kdim`` / ``vdim`` -> ``num_heads * head_dim``, head-major rows.
    out_proj : nn.Linear
        ``num_heads * head_dim`` -> ``embed_dim``; called as a module on the concatenated context.
    num_heads : int
        Heads now present (lowered by :meth:`keep_heads`).
    head_dim : int
        Width of one head: the original ``embed_dim // num_heads``, never changed.
    embed_dim, kdim, vdim, dropout, batch_first
        As given.

    Notes
    -----
    ``_qkv_same_embed_dim`` is always False and ``in_proj_weight`` is None, as on a torch module
    with separate key / value widths: ``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder``
    read them and then never take their fused fast path, which would bypass this module. An
    ``nn.TransformerEncoder`` decides whether to pack padded input into a NestedTensor when it is
    built: swapped into an existing one by hand, the module needs ``encoder.use_nested_tensor =
    False`` (:func:`replace_torch_attention` sets it), or an eval-mode call with a padding mask
    fails.
    A 3-D ``attn_mask`` has one (L, S) slice per batch entry and *present* head:
    ``(N * num_heads, L, S)`` with the current ``num_heads``.
    """

    # read by torch's transformer layers and by code written for nn.MultiheadAttention
    _qkv_same_embed_dim = False
    in_proj_weight = None
    bias_k = None
    bias_v = None
    add_zero_attn = False

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        embed_dim, num_heads = _positive_int(embed_dim, "embed_dim"), _positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ShrinkNetError(f"num_heads: expected a divisor of embed_dim={embed_dim}, got {num_heads}")
        kdim = embed_dim if kdim is None else _positive_int(kdim, "kdim")
        vdim = embed_dim if vdim is None else _positive_int(vdim, "vdim")
        if add_bias_kv:
            raise ShrinkNetError("add_bias_kv: expected False (a learnt extra key/value is not a head and is "
                                 "not supported), got True")
        if add_zero_attn:
            raise ShrinkNetError("add_zero_attn: expected False (not supported), got True")
        p = float(dropout)
        if not 0.0 <= p <= 1.0:
            raise ShrinkNetError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        self.embed_dim, self.kdim, self.vdim = embed_dim, kdim, vdim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = p
        self.batch_first = bool(batch_first)
        # built on the meta device and initialised once below, in torch's order, so that a seed gives
        # the weights torch's module gets from it
        meta = {"device": "meta", "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **meta)
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias, **meta)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias, **meta)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **meta)
        self.to_empty(device=device if device is not None else torch.empty(0).device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as torch's module does: the same seed gives the same weights as ``nn.MultiheadAttention``."""
        with torch.no_grad():
            self.out_proj.reset_parameters()       # torch's out_proj draws its weights when it is built
            if self.kdim == self.embed_dim == self.vdim:
                # torch draws the packed (3E, E) in_proj_weight at once: its Xavier bound counts 3E outputs
                w = torch.empty(3 * self.q_proj.out_features, self.embed_dim,
                                dtype=self.q_proj.weight.dtype, device=self.q_proj.weight.device)
                nn.init.xavier_uniform_(w)
                for lin, part in zip((self.q_proj, self.k_proj, self.v_proj), w.chunk(3)):
                    lin.weight.copy_(part)
            else:
                for lin in (self.q_proj, self.k_proj, self.v_proj):
                    nn.init.xavier_uniform_(lin.weight)
            for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
                if lin.bias is not None:
                    lin.bias.zero_()

    @property
    def in_proj_bias(self) -> torch.Tensor | None:
        """The q, k and v biases end to end (as torch's packed ``in_proj_bias``), or None without bias.

        Torch's transformer layers test it against None to tell a model built with ``bias=False``.
        """
        if self.q_proj.bias is None:
            return None
        return torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiheadAttention":
        """A copy of a ``torch.nn.MultiheadAttention`` with exactly its weights and settings.

        Parameters
        ----------
        mha : torch.nn.MultiheadAttention
            Built without ``add_bias_kv`` and ``add_zero_attn``. Not changed.

        Returns
        -------
        MultiheadAttention
            Same device, dtype, training mode and ``requires_grad`` flags; the same outputs and
            attention weights for every input.

        Raises
        ------
        ShrinkNetError
            If ``mha`` is not a torch ``nn.MultiheadAttention`` or uses ``add_bias_kv`` /
            ``add_zero_attn``.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise ShrinkNetError(f"mha: expected a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        if mha.bias_k is not None or mha.bias_v is not None:
            raise ShrinkNetError("mha: expected a module built with add_bias_kv=False (a learnt extra key/value "
                                 "is not supported), got add_bias_kv=True")
        if mha.add_zero_attn:
            raise ShrinkNetError("mha: expected a module built with add_zero_attn=False (not supported), "
                                 "got add_zero_attn=True")
        w_out = mha.out_proj.weight
        # made on the meta device: initialising real weights would draw from (and so move) the global RNG
        new = cls(mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=mha.in_proj_bias is not None,
                  kdim=mha.kdim, vdim=mha.vdim, batch_first=mha.batch_first, device="meta",
                  dtype=w_out.dtype).to_empty(device=w_out.device)
        if mha._qkv_same_embed_dim:
            ws = mha.in_proj_weight.chunk(3)
            grads = (mha.in_proj_weight.requires_grad,) * 3
        else:
            ws = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
            grads = tuple(w.requires_grad for w in ws)
        bs = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
        pairs = [(lin.weight, w, g) for lin, w, g in zip((new.q_proj, new.k_proj, new.v_proj), ws, grads)]
        pairs += [(lin.bias, b, mha.in_proj_bias.requires_grad)
                  for lin, b in zip((new.q_proj, new.k_proj, new.v_proj), bs) if b is not None]
        pairs.append((new.out_proj.weight, mha.out_proj.weight, mha.out_proj.weight.requires_grad))
        if mha.out_proj.bias is not None:
            pairs.append((new.out_proj.bias, mha.out_proj.bias, mha.out_proj.bias.requires_grad))
        with torch.no_grad():
            for dst, src, g in pairs:
                dst.copy_(src)
                dst.requires_grad_(g)
        return new.train(mha.training)

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
        if self.kdim != self.embed_dim or self.vdim != self.embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        return s + f", dropout={self.dropout}, batch_first={self.batch_first}"

    # ---- heads -----------------------------------------------------------------------------
    def keep_heads(self, idx) -> "MultiheadAttention":
        """Keep only the heads ``idx`` and remove the others, in place.

        The removed heads' query / key / value rows and their ``out_proj`` columns are dropped, so
        the output equals the unpruned module's output with those heads' context set to zero before
        ``out_proj``. ``head_dim`` and the scaling stay; ``num_heads`` becomes ``len(idx)``. The
        projection modules stay the same objects (hooks on them keep working) but get new weight
        Parameters: an optimizer made before must be made again.

        Parameters
        ----------
        idx : sequence of int
            Indices of the heads to keep among the present ones: sorted, distinct, in
            ``[0, num_heads)``, at least one.

        Returns
        -------
        MultiheadAttention
            ``self``.

        Raises
        ------
        ShrinkNetError
            If ``idx`` is not such a sequence.
        """
        heads = self._check_heads(idx)
        d = self.head_dim
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]).to(self.out_proj.weight.device)
        with torch.no_grad():
            for lin in (self.q_proj, self.k_proj, self.v_proj):
                _replace(lin, "weight", lin.weight.index_select(0, cols))
                if lin.bias is not None:
                    _replace(lin, "bias", lin.bias.index_select(0, cols))
                lin.out_features = len(cols)
            _replace(self.out_proj, "weight", self.out_proj.weight.index_select(1, cols))
            self.out_proj.in_features = len(cols)
        self.num_heads = len(heads)
        return self

    def _check_heads(self, idx) -> list[int]:
        if isinstance(idx, torch.Tensor):
            idx = idx.tolist()
        try:
            items = list(idx)
        except TypeError:
            raise ShrinkNetError(f"idx: expected a sequence of head indices, got {type(idx).__name__}") from None
        heads = []
        for i in items:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise ShrinkNetError(f"idx: expected integer head indices, got {i!r}")
            heads.append(int(i.__index__()))
        if not heads:
            raise ShrinkNetError(f"idx: expected at least one head to keep (of {self.num_heads}), got none")
        bad = [h for h in heads if not 0 <= h < self.num_heads]
        if bad:
            raise ShrinkNetError(f"idx: expected head indices in [0, {self.num_heads}), got {bad}")
        if any(a >= b for a, b in zip(heads, heads[1:])):
            raise ShrinkNetError(f"idx: expected sorted, distinct head indices, got {heads}")
        return heads

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention output and, with ``need_weights``, the attention weights, as torch computes them.

        Parameters
        ----------
        query : tensor
            (L, E) unbatched, (N, L, E) if ``batch_first`` else (L, N, E).
        key, value : tensor
            (S, kdim) / (S, vdim) unbatched, else (N, S, ·) or (S, N, ·) as ``query``.
        key_padding_mask : tensor, optional
            (N, S), or (S,) unbatched; bool (True = ignore that key) or float (added to the scores).
        need_weights : bool
            Also return the attention weights (computed explicitly; without it the scaled
            dot-product attention kernel is used).
        attn_mask : tensor, optional
            (L, S) or (N * num_heads, L, S) ((num_heads, L, S) unbatched); bool (True = not
            allowed to attend) or float (added to the scores).
        average_attn_weights : bool
            Return the weights averaged over the heads, (N, L, S), instead of per head,
            (N, num_heads, L, S) (without N when unbatched).
        is_causal : bool
            Hint that ``attn_mask`` is the causal mask. As in torch: without ``key_padding_mask``
            and ``need_weights`` a causal mask is applied in place of ``attn_mask``; otherwise
            ``attn_mask`` is used. With no ``attn_mask`` at all (where torch raises) the causal
            mask is applied.

        Returns
        -------
        attn_output : tensor
            (L, E), (N, L, E) or (L, N, E), laid out like ``query``.
        attn_weights : tensor or None
            The post-dropout attention weights when ``need_weights``, else None.
        """
        if query.is_nested or key.is_nested or value.is_nested:
            raise ShrinkNetError("query: expected a dense tensor, got a NestedTensor (an nn.TransformerEncoder "
                                 "holding this module needs use_nested_tensor=False; replace_torch_attention "
                                 "sets it)")
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, tgt_len, src_len = query.shape[0], query.shape[1], key.shape[1]
        h, d = self.num_heads, self.head_dim
        dt = query.dtype
        kpm = _float_mask(key_padding_mask, "key_padding_mask", dt)
        mask = _float_mask(attn_mask, "attn_mask", dt)
        if mask is not None:
            mask = mask.reshape(n, h, tgt_len, src_len) if mask.dim() == 3 else mask.reshape(1, 1, tgt_len, src_len)
        # torch lets the hint replace attn_mask only where neither padding nor weights need the mask
        causal_hint = is_causal and kpm is None and not need_weights
        if causal_hint:
            mask = None
        elif is_causal and mask is None:
            mask = _causal_mask(tgt_len, src_len, dt, query.device)
        if kpm is not None:
            kpm = kpm.view(n, 1, 1, src_len)
            mask = kpm if mask is None else mask + kpm

        q = self.q_proj(query).view(n, tgt_len, h, d).transpose(1, 2)     # (N, H, L, D)
        k = self.k_proj(key).view(n, src_len, h, d).transpose(1, 2)
        v = self.v_proj(value).view(n, src_len, h, d).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / float(d)), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            if p > 0.0:
                weights = F.dropout(weights, p=p)
            ctx = torch.matmul(weights, v)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal_hint,
                                                 scale=1.0 / math.sqrt(d))
        ctx = ctx.transpose(1, 2).reshape(n, tgt_len, h * d)             # head-major columns
        if not batched:
            ctx = ctx.squeeze(0)
        out = self.out_proj(ctx)
        if batched and not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def _check_shapes(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        """Whether the input is batched; ShrinkNetError naming the argument where a shape is wrong."""
        if query.dim() not in (2, 3):
            raise ShrinkNetError(f"query: expected a 2-D (unbatched) or 3-D tensor, got {query.dim()}-D")
        batched = query.dim() == 3
        for name, t, width in (("query", query, self.embed_dim), ("key", key, self.kdim),
                               ("value", value, self.vdim)):
            if t.dim() != query.dim():
                raise ShrinkNetError(f"{name}: expected a {query.dim()}-D tensor like query, got {t.dim()}-D")
            if t.shape[-1] != width:
                raise ShrinkNetError(f"{name}: expected last dimension {width}, got shape {tuple(t.shape)}")
        b = 0 if self.batch_first or not batched else 1    # the batch dimension
        s = 1 if self.batch_first and batched else 0        # the sequence dimension
        if key.shape[:-1] != value.shape[:-1]:
            raise ShrinkNetError(f"value: expected the sequence and batch dimensions of key {tuple(key.shape[:-1])}, "
                                 f"got {tuple(value.shape[:-1])}")
        n = query.shape[b] if batched else 1
        if batched and key.shape[b] != n:
            raise ShrinkNetError(f"key: expected batch size {n} like query, got shape {tuple(key.shape)}")
        tgt_len, src_len = query.shape[s], key.shape[s]
        if key_padding_mask is not None:
            want = (n, src_len) if batched else (src_len,)
            if tuple(key_padding_mask.shape) != want:
                raise ShrinkNetError(f"key_padding_mask: expected shape {want}, got {tuple(key_padding_mask.shape)}")
        if attn_mask is not None:
            shapes = [(tgt_len, src_len), (n * self.num_heads, tgt_len, src_len)]
            if tuple(attn_mask.shape) not in shapes:
                raise ShrinkNetError(f"attn_mask: expected shape {shapes[0]} or {shapes[1]} (N * num_heads, L, S), "
                                     f"got {tuple(attn_mask.shape)}")
        return batched


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__") or v.__index__() <= 0:
        raise ShrinkNetError(f"{name}: expected a positive integer, got {v!r}")
    return int(v.__index__())


def _float_mask(mask, name: str, dtype) -> torch.Tensor | None:
    """A bool mask as 0 / -inf in dtype (True = masked), a float one as it is: what torch adds to the scores."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    if not mask.is_floating_point():
        raise ShrinkNetError(f"{name}: expected a bool or floating-point mask, got dtype {mask.dtype}")
    return mask.to(dtype)


def _causal_mask(tgt_len: int, src_len: int, dtype, device) -> torch.Tensor:
    """-inf above the diagonal, aligned top-left as scaled_dot_product_attention's is_causal."""
    allowed = torch.ones(tgt_len, src_len, dtype=torch.bool, device=device).tril()
    return torch.zeros(tgt_len, src_len, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))


def _replace(lin: nn.Linear, name: str, t: torch.Tensor) -> None:
    old = getattr(lin, name)
    setattr(lin, name, nn.Parameter(t, requires_grad=old.requires_grad))


def replace_torch_attention(model: nn.Module) -> list[str]:
    """Swap every ``torch.nn.MultiheadAttention`` inside ``model`` for :class:`MultiheadAttention`, in place.

    Each is replaced by :meth:`MultiheadAttention.from_torch` (same weights, device, dtype and
    training mode; a module registered under several names stays shared). Every
    ``nn.TransformerEncoder`` whose first layer's attention was swapped gets
    ``use_nested_tensor = False``, as its constructor would have set for this module: its nested
    tensor path would otherwise hand the layers a NestedTensor.

    Parameters
    ----------
    model : nn.Module
        Changed in place; must not itself be an ``nn.MultiheadAttention`` (use ``from_torch``).

    Returns
    -------
    list of str
        The swapped modules' names (as in ``model.named_modules()``), in module order.

    Raises
    ------
    ShrinkNetError
        If ``model`` is not an ``nn.Module``, is an ``nn.MultiheadAttention`` itself, or one of its
        attention modules uses ``add_bias_kv`` / ``add_zero_attn`` (then nothing is swapped).
    """
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.MultiheadAttention):
        raise ShrinkNetError("model: expected a module that contains nn.MultiheadAttention modules, got an "
                             "nn.MultiheadAttention itself (use MultiheadAttention.from_torch)")
    sites = []
    for name, child in model.named_modules(remove_duplicate=False):
        if isinstance(child, nn.MultiheadAttention):
            pname, _, cname = name.rpartition(".")
            sites.append((pname, model.get_submodule(pname), cname, child))
    new: dict[int, MultiheadAttention] = {}
    for *_, child in sites:                      # convert all first: a refused one leaves the model unchanged
        if id(child) not in new:
            new[id(child)] = MultiheadAttention.from_torch(child)
    names, seen = [], set()
    for pname, parent, cname, child in sites:
        if (id(parent), cname) in seen:          # a shared parent is listed once per path
            continue
        seen.add((id(parent), cname))
        setattr(parent, cname, new[id(child)])
        names.append(f"{pname}.{cname}" if pname else cname)
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoder) and len(m.layers) and \
                isinstance(getattr(m.layers[0], "self_attn", None), MultiheadAttention):
            m.use_nested_tensor = False
    return names
