"""Transformer structures as units: attention heads and FFN neurons, found, read and cut by name.

A transformer's prunable structures sit between a set of *producers* and one linear *consumer*:

* an FFN neuron: row j of the first projection (``nn.Linear`` or Hugging Face ``Conv1D``), or of
  both ``gate_proj`` and ``up_proj`` in a gated (LLaMA-style) block, and column j of the second;
* an attention head: its rows of the query, key and value projections and its block of
  ``head_dim`` columns in the output projection. With grouped key/value heads (LLaMA-style GQA, H
  query heads sharing K < H key/value heads) a unit is one key/value head *with the H / K query
  heads that read it*, since a query head cannot lose its key/value head alone.

Each unit owns a contiguous block of the consumer's input features (1 for a neuron, heads x
head_dim for a head), so its gate multiplies that block of the consumer's input: for a head, the
head's context output before the output projection. Removing it takes the producers' rows and the
consumer's columns (:func:`cut`); the heads kind (:mod:`shrinknet.units.heads`) also updates the head
counts the module keeps (:func:`set_head_counts`). How each kind of unit uses these sites (found,
gated, cut, saved, costed) is in :mod:`shrinknet.units`.

Attention modules are recognised by structure, in the styles of :data:`ATTENTION_STYLES` (so other
models built the same way work too; :func:`register_attention_style` adds one): ``q_proj / k_proj /
v_proj / o_proj`` (Hugging Face LLaMA, Mistral, Qwen, ViT, ...; and
:class:`shrinknet.attention.MultiheadAttention`, which replaces ``nn.MultiheadAttention``, with
``out_proj``), ``self.query / key / value`` with ``output.dense`` (Hugging Face BERT, RoBERTa; ViT
before transformers 5 as ``attention.query``), and ``c_attn`` / ``c_proj`` ``Conv1D`` (Hugging Face
GPT-2). Finding, cutting and saving all read that one registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn



def is_conv1d(m) -> bool:
    """Hugging Face's ``Conv1D`` (a Linear with a transposed (in, out) weight), without importing it."""
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(m, "weight", None) is not None


def is_dense(m) -> bool:
    return isinstance(m, nn.Linear) or is_conv1d(m)


def n_out(m) -> int:
    return int(m.nf) if is_conv1d(m) else int(m.out_features)


def weight_oi(m) -> torch.Tensor:
    """The (out, in) weight of a Linear or Conv1D (a view: writes reach the parameter)."""
    return m.weight.T if is_conv1d(m) else m.weight


@dataclass(frozen=True)
class Rows:
    """Rows [start + j * step, start + (j + 1) * step) of module ``name``'s output belong to unit j."""
    name: str
    step: int
    start: int = 0

    def of(self, j: int) -> slice:
        return slice(self.start + j * self.step, self.start + (j + 1) * self.step)


@dataclass(frozen=True)
class Site:
    """Where a transformer unit group lives: its producers' rows and its consumer's input columns.

    ``kind`` is "heads", "gated-ffn" or "ffn"; ``size`` units of ``block`` consumer columns each."""
    kind: str
    name: str                   # the unit group's name: the attention / MLP module, or the FFN producer
    size: int
    block: int
    producers: tuple            # Rows records; for heads the queries', keys', values' in that order
    consumer: str               # the linear layer whose input columns the units own
    heads: dict | None = None   # heads: {"module": name, "heads": H, "kv": K, "head_dim": d, "style": ...}

    def columns(self, j: int) -> slice:
        return slice(j * self.block, (j + 1) * self.block)


def _child(m, *path):
    for p in path:
        m = getattr(m, p, None) if m is not None else None
    return m


def _join(name: str):
    return lambda *p: ".".join([name, *p]) if name else ".".join(p)


def _qkv_site(name: str, m: nn.Module) -> Site | None:
    join = _join(name)
    out = _child(m, "o_proj") or _child(m, "out_proj")
    q, k, v = (_child(m, p) for p in ("q_proj", "k_proj", "v_proj"))
    if not all(isinstance(t, nn.Linear) for t in (q, k, v, out)):
        return None
    d = int(getattr(m, "head_dim", 0) or 0)
    if not d:
        return None
    H, K = q.out_features // d, k.out_features // d
    if H * d != q.out_features or K * d != k.out_features or K == 0 or H % K:
        return None
    oname = "o_proj" if _child(m, "o_proj") is not None else "out_proj"
    G = H // K
    return Site("heads", name, K, G * d, (Rows(join("q_proj"), G * d), Rows(join("k_proj"), d),
                                          Rows(join("v_proj"), d)), join(oname),
                {"module": name, "heads": H, "kv": K, "head_dim": d, "style": "qkv"})


def _bert_site(name: str, m: nn.Module) -> Site | None:
    join = _join(name)
    inner = "self" if _child(m, "self") is not None else "attention"     # BERT / ViT before transformers 5
    sa, dense = _child(m, inner), _child(m, "output", "dense")
    if sa is None or not isinstance(dense, nn.Linear) or not all(
            isinstance(_child(sa, p), nn.Linear) for p in ("query", "key", "value")):
        return None
    d = int(getattr(sa, "attention_head_size", 0) or 0)
    H = sa.query.out_features // d if d else 0
    if not H or H * d != sa.query.out_features:
        return None
    rows = tuple(Rows(join(inner, p), d) for p in ("query", "key", "value"))
    return Site("heads", name, H, d, rows, join("output", "dense"),
                {"module": join(inner), "heads": H, "kv": H, "head_dim": d, "style": "bert"})


def _gpt2_site(name: str, m: nn.Module) -> Site | None:
    join = _join(name)
    c_attn, c_proj = _child(m, "c_attn"), _child(m, "c_proj")
    if not (is_conv1d(c_attn) and is_conv1d(c_proj) and hasattr(m, "split_size")):
        return None
    d, E = int(m.head_dim), int(m.split_size)
    if getattr(m, "is_cross_attention", False) or n_out(c_attn) != 3 * E or E % d:
        return None
    H = E // d
    rows = tuple(Rows(join("c_attn"), d, s * E) for s in range(3))
    return Site("heads", name, H, d, rows, join("c_proj"),
                {"module": name, "heads": H, "kv": H, "head_dim": d, "style": "gpt2"})


@dataclass(frozen=True)
class AttentionStyle:
    """One way attention modules are built, the one place that says so: finding (``site``), cutting
    and saving (``counts``) all read it.

    ``site(name, module)`` gives the module's heads as a :class:`Site` (producers' rows, the
    consumer's columns, ``heads["module"]``: the module that keeps the head counts) or None where the
    module is not of this style; ``counts(H, K, d)`` gives the integer head counts that module keeps
    for H query heads and K key/value heads of size d (a cut sets those it has; a saved file records
    them); ``describe`` says what the style recognises, for errors."""
    name: str
    describe: str
    site: Callable
    counts: Callable


#: the attention styles heads are found in, by name, tried in this order
ATTENTION_STYLES: dict[str, AttentionStyle] = {}


def register_attention_style(style: AttentionStyle) -> AttentionStyle:
    """Add an attention style (see :class:`AttentionStyle`); its heads are then units everywhere."""
    ATTENTION_STYLES[style.name] = style
    return style


def _hf_counts(H: int, K: int, d: int) -> dict:
    return {"num_heads": H, "num_attention_heads": H, "num_key_value_heads": K, "all_head_size": H * d}


register_attention_style(AttentionStyle(
    "qkv", "q_proj/k_proj/v_proj/o_proj modules (LLaMA-style, grouped key/value heads too; ViT; "
    "nn.MultiheadAttention through shrinknet's drop-in, with out_proj)", _qkv_site, _hf_counts))
register_attention_style(AttentionStyle("bert", "BERT-style self.query/key/value with output.dense", _bert_site,
                                        _hf_counts))
register_attention_style(AttentionStyle("gpt2", "GPT-2 c_attn/c_proj (Conv1D)", _gpt2_site,
                                        lambda H, K, d: {"num_heads": H, "split_size": H * d}))


def _nanogpt_site(name: str, m: nn.Module) -> Site | None:
    # shrinknet.causal_attention.CausalSelfAttention, the drop-in for nanoGPT's module (which sizes its
    # heads from its input width, so it cannot lose one): q, k, v blocks of c_attn's rows, head-major
    if getattr(type(m), "shrinknet_style", None) != "nanogpt":
        return None
    join = _join(name)
    H, d = int(m.n_head), int(m.head_dim)
    rows = tuple(Rows(join("c_attn"), d, s * H * d) for s in range(3))
    return Site("heads", name, H, d, rows, join("c_proj"),
                {"module": name, "heads": H, "kv": H, "head_dim": d, "style": "nanogpt"})


register_attention_style(AttentionStyle("nanogpt", "nanoGPT's CausalSelfAttention (c_attn/c_proj nn.Linear, "
                                        "n_head) through shrinknet's drop-in", _nanogpt_site,
                                        lambda H, K, d: {"n_head": H}))

def head_attrs() -> frozenset:
    """Every integer attribute any style keeps its head counts in."""
    return frozenset(a for s in ATTENTION_STYLES.values() for a in s.counts(1, 1, 1))


def attention_site(name: str, m: nn.Module) -> Site | None:
    """The heads of attention module ``m`` (named ``name``), or None if ``m`` is of no known style."""
    for style in ATTENTION_STYLES.values():
        site = style.site(name, m)
        if site is not None:
            return site
    return None


def supported_attention() -> str:
    """The attention styles, as errors name them."""
    return "; ".join(s.describe for s in ATTENTION_STYLES.values())


def head_counts(model: nn.Module) -> dict[str, dict[str, int]]:
    """{module: its integer head counts} for every module that keeps the head counts of a known
    attention style (what a saved file records and a load restores)."""
    mods, out = dict(model.named_modules()), {}
    for site in find_sites(model)[0]:
        h = site.heads
        m = mods[h["module"]]
        out[h["module"]] = {a: getattr(m, a) for a in ATTENTION_STYLES[h["style"]].counts(1, 1, 1)
                            if type(getattr(m, a, None)) is int}
    return {n: c for n, c in out.items() if c}


def looks_like_attention(m: nn.Module) -> bool:
    """Whether ``m`` is an attention module, by its class name (to refuse, by name, the ones we do not know)."""
    return isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith(("Attention", "SelfAttention"))


def gated_ffn_site(name: str, m: nn.Module) -> Site | None:
    """A gated FFN (``down_proj(act(gate_proj(x)) * up_proj(x))``): neuron j is row j of gate_proj and
    up_proj and column j of down_proj."""
    g, u, d = (_child(m, p) for p in ("gate_proj", "up_proj", "down_proj"))
    if not all(isinstance(t, nn.Linear) for t in (g, u, d)) or g.out_features != u.out_features:
        return None
    join = (lambda p: f"{name}.{p}" if name else p)
    return Site("gated-ffn", name, g.out_features, 1, (Rows(join("gate_proj"), 1), Rows(join("up_proj"), 1)),
                join("down_proj"))


def ffn_site(name: str, producer: nn.Module, consumer: str) -> Site:
    """A plain FFN: neuron j is row j of ``producer`` and column j of ``consumer``."""
    return Site("ffn", name, n_out(producer), 1, (Rows(name, 1),), consumer)


def find_sites(model: nn.Module):
    """(heads sites, gated FFN sites, names of attention-looking modules we do not know), in module order.
    A module that merely contains supported attention (a wrapper, a layer) is not one we do not know."""
    heads, gated, inside = [], [], []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        s = attention_site(name, m)
        if s is not None:
            heads.append(s)
            inside.append(name)
            continue
        s = gated_ffn_site(name, m)
        if s is not None:
            gated.append(s)
    known = [s.name for s in heads]
    unknown = [name for name, m in model.named_modules()
               if name and looks_like_attention(m) and not any(
                   name == k or name.startswith(k + ".") or k.startswith(name + ".") for k in known)]
    return heads, gated, unknown


def block_roots(heads) -> set[str]:
    """The modules that hold an attention module (a transformer block): its parent's name."""
    return {s.name.rpartition(".")[0] for s in heads}


# ---- reading weights ------------------------------------------------------------------------
def fan_in(site: Site, mods: dict) -> torch.Tensor:
    """(K, M): each unit's incoming weights (its producers' rows, flattened)."""
    parts = []
    for r in site.producers:
        W = weight_oi(mods[r.name]).detach()
        parts.append(torch.stack([W[r.of(j)].flatten() for j in range(site.size)]))
    return torch.cat(parts, 1)


def fan_out(site: Site, mods: dict) -> torch.Tensor:
    """(K, M): each unit's outgoing weights (its block of the consumer's columns, flattened)."""
    W = weight_oi(mods[site.consumer]).detach()
    return torch.stack([W[:, site.columns(j)].flatten() for j in range(site.size)])


# ---- cutting ----------------------------------------------------------------------------------
def _keep_out(m, idx: torch.Tensor):
    with torch.no_grad():
        if is_conv1d(m):
            m.weight = nn.Parameter(m.weight[:, idx].clone(), requires_grad=m.weight.requires_grad)
            m.nf = int(idx.numel())
        else:
            m.weight = nn.Parameter(m.weight[idx].clone(), requires_grad=m.weight.requires_grad)
            m.out_features = int(idx.numel())
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias[idx].clone(), requires_grad=m.bias.requires_grad)


def _keep_in(m, idx: torch.Tensor):
    with torch.no_grad():
        if is_conv1d(m):
            m.weight = nn.Parameter(m.weight[idx].clone(), requires_grad=m.weight.requires_grad)
            m.nx = int(idx.numel())
        else:
            m.weight = nn.Parameter(m.weight[:, idx].clone(), requires_grad=m.weight.requires_grad)
            m.in_features = int(idx.numel())


def cut(model: nn.Module, site: Site, keep: list[int], *, silent: bool = False) -> int:
    """Remove every unit of ``site`` not in ``keep`` from ``model`` in place: its producers' rows and its
    consumer's columns; the number of units left. ``silent``: where ``keep`` is empty, keep unit 0 with
    its consumer's columns zeroed instead (what attention code that cannot run with no heads needs: it
    computes the same as removing them all); so it does where a producer or the consumer is a Conv1D. What else a kind keeps of the size (an attention module's
    head counts, :func:`set_head_counts`) is its unit kind's business (:mod:`shrinknet.units`)."""
    mods = dict(model.named_modules())
    keep = sorted(int(j) for j in keep)
    # Hugging Face's Conv1D (GPT-2) cannot run at width 0 (its reshape of an empty input is ambiguous)
    narrow = any(is_conv1d(mods[n]) for n in [*(r.name for r in site.producers), site.consumer])
    silent = (silent or narrow) and not keep
    if silent:
        keep = [0]
    by_module: dict[str, list] = {}
    for r in site.producers:
        by_module.setdefault(r.name, []).append(r)
    for name, rs in by_module.items():
        m = mods[name]
        kept = set(keep)
        drop = {i for r in rs for j in range(site.size) if j not in kept for i in range(r.of(j).start, r.of(j).stop)}
        _keep_out(m, torch.tensor([i for i in range(n_out(m)) if i not in drop], dtype=torch.long))
    cols = torch.tensor([i for j in keep for i in range(site.columns(j).start, site.columns(j).stop)], dtype=torch.long)
    _keep_in(mods[site.consumer], cols)
    if silent:
        with torch.no_grad():
            weight_oi(mods[site.consumer]).zero_()
    return len(keep)


def set_head_counts(mods: dict, site: Site, k: int) -> None:
    """Update the head counts an attention module keeps for ``k`` key/value heads left, so its forward
    pass still runs (its style says which)."""
    h = site.heads
    m = mods[h["module"]]
    for attr, value in ATTENTION_STYLES[h["style"]].counts(k * (h["heads"] // h["kv"]), k, h["head_dim"]).items():
        if type(getattr(m, attr, None)) is int:
            setattr(m, attr, value)


__all__ = ["ATTENTION_STYLES", "AttentionStyle", "Site", "head_attrs", "attention_site", "head_counts",
           "register_attention_style", "set_head_counts", "supported_attention", "cut", "fan_in", "fan_out", "ffn_site", "find_sites", "gated_ffn_site",
           "is_conv1d", "is_dense"]
