"""Only the rows the loss reads: the last transformer block computes the positions the loss reads.

After the last attention module (the last step that mixes positions) every module works on each
position alone, so where the loss reads only some positions (a classifier pooling the first token,
a prediction from the last position, labels that skip positions) the rest of the last block need
not run for the others. While :meth:`RowPlan.on` is on, for the last block B (the attention module
A's parent):

* B's input (the residual stream) is cut to the read rows, so everything B does after A (the
  residual sums, the norms, the FFN) runs on those rows;
* A still gets every row (the norms that B applies before A, rerun on the full input), since its
  keys and values read them all, and its output is cut to the read rows;
* where A computes its attention through Hugging Face's attention functions (``eager``, ``sdpa``,
  any registered one), those run on the read rows' queries only (the rest of their output is 0),
  and A's output projection (the consumer of its heads) takes the read rows only, so A's scores,
  weighted sums and output projection are computed for those rows; where A's queries come from a
  module of their own (``q_proj``, BERT's ``query``; not GPT-2's fused ``c_attn``), it computes the
  read rows only and puts them back on every position (0 elsewhere: A's code reshapes its queries
  by the input's length), so only the keys and values are computed for every row;
* B's output is put back on every position (the rows not read hold 0), so whatever follows (a
  final norm, a pooler indexing position 0 or -1, an LM head and its loss) sees the shapes it
  expects.

Where a reshape after B needs every position (GPT-2's model reshapes the final norm's output by the
sequence length), the rows go back after B and the last module that has every position (the LM
head) is cut to the read rows once more (:attr:`RowPlan.head`).

The cut of A's own work is checked like the rest: an attention module whose code cannot take it
(a causal flag that the attention function drops for a single query, a residual inside A that adds
the cut rows to every row: BERT's, which passes only where one row is read, by broadcasting) fails
the check and A then runs in full. This works for every attention style the registry knows
(:data:`shrinknet.blocks.ATTENTION_STYLES`), and :func:`plan` accepts it for a model and a chunk of
data only after checking it: the rows the loss reads are those where its gradient is nonzero, and the
chunk's loss per sample with the rows cut must equal the full pass's to float rounding, whatever the
placed rows not read hold (0 or large values).
Anything else (no attention, every row read, a check that fails) runs in full.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import blocks
from .. import losses

#: a plan is kept only where it reads at most this share of the positions
MAX_SHARE = 0.5

#: what the check puts in the rows not read, besides 0: a loss that changed would read them
PROBE = 1e3


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or type(m).__name__.endswith(("LayerNorm", "RMSNorm", "Norm"))


def _main(out):
    """The residual-stream tensor of a module's output: the tensor, or a tuple's first element."""
    return out if isinstance(out, torch.Tensor) else out[0] if isinstance(out, (tuple, list)) and out else None


def _with_main(out, t):
    if isinstance(out, torch.Tensor):
        return t
    return type(out)((t, *out[1:])) if not hasattr(out, "_fields") else type(out)(t, *out[1:])


class RowPlan:
    """The last block, its attention, the norms between them, and the rows the loss reads."""

    def __init__(self, block, attn, chain, T: int, last=None, out_proj=None, query=None):
        self.block, self.attn, self.chain, self.T = block, attn, chain, T
        self.last = block if last is None else last      # where the rows go back on every position
        self.out_proj = out_proj                         # A's output projection (its heads' consumer)
        self.query = query                               # A's own query projection, or None
        self.cut_attention = False                       # A's scores and output projection on the rows
        self.cut_queries = False                         # and its query projection
        self.head = None                                 # a module after B cut to the rows on its own
        self.rows: torch.Tensor | None = None

    @contextlib.contextmanager
    def on(self, fill: float = 0.0):
        """Hooks that cut the last block to ``self.rows`` (see the module's docstring)."""
        rows, T = self.rows, self.T
        state: dict = {}
        R = rows.numel()

        def block_in(module, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states")
            if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.shape[1] != T:
                return None
            state["full"] = x
            cut = x.index_select(1, rows)
            state["cut"] = cut
            if args:
                return (cut, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": cut}

        def chain_out(module, args, out):
            state["cut"] = out

        def attn_in(module, args, kwargs):
            if "full" not in state:
                return None
            full = state["full"]
            for m in self.chain:                       # the norms B applies before A, on every row (their
                full = type(m).forward(m, full)        # own forward: a replayed one returns the cut rows)
            cut = state["cut"]
            args = tuple(full if a is cut else a for a in args)
            kwargs = {k: (full if v is cut else v) for k, v in kwargs.items()}
            return args, kwargs

        def attn_out(module, args, out):
            t = _main(out)
            if t is None or t.ndim < 3 or t.shape[1] != T:
                return None
            return _with_main(out, t.index_select(1, rows))

        def cut_in(module, args):
            """A module's input cut to the read rows (A's output projection, the head, the queries)."""
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.ndim >= 3 and x.shape[1] == T:
                return (x.index_select(1, rows), *args[1:])
            return None

        def query_in(module, args):
            cut = cut_in(module, args)
            state["query"] = cut is not None
            return cut

        def query_out(module, args, out):
            if state.pop("query", False):
                return _place(out, rows, T, fill)
            return None

        def block_out(module, args, out):
            t = _main(out)
            if t is None or t.ndim < 3 or t.shape[1] != R:
                return None
            state.clear()
            return _with_main(out, _place(t, rows, T, fill))

        handles = [self.block.register_forward_pre_hook(block_in, with_kwargs=True),
                   self.attn.register_forward_pre_hook(attn_in, with_kwargs=True, prepend=True),
                   self.attn.register_forward_hook(attn_out),
                   self.last.register_forward_hook(block_out)]
        if self.head is not None:                      # rows back after B; the head (an LM head that a
            handles += [self.head.register_forward_pre_hook(cut_in),        # view in between needs
                        self.head.register_forward_hook(block_out)]          # every position for) cut again
        if self.chain:
            handles.append(self.chain[-1].register_forward_hook(chain_out))
        cut_attention = self.cut_attention and self.out_proj is not None
        if cut_attention:
            handles.append(self.out_proj.register_forward_pre_hook(cut_in))
            if self.cut_queries and self.query is not None:
                handles += [self.query.register_forward_pre_hook(query_in),
                            self.query.register_forward_hook(query_out)]
        try:
            with _attention_on_rows(self.attn, rows, T, fill) if cut_attention else contextlib.nullcontext():
                yield self
        finally:
            for h in handles:
                h.remove()


def _place(t: torch.Tensor, rows: torch.Tensor, T: int, fill: float = 0.0, dim: int = 1) -> torch.Tensor:
    """``t`` (R rows along ``dim``) on rows ``rows`` of T, ``fill`` elsewhere (an out-of-place
    ``index_copy``, which runs under vmap as well)."""
    shape = list(t.shape)
    shape[dim] = T
    return t.new_full(shape, fill).index_copy(dim, rows, t)


@contextlib.contextmanager
def _attention_on_rows(attn: nn.Module, rows: torch.Tensor, T: int, fill: float = 0.0):
    """While on, Hugging Face's attention functions called by ``attn`` (or a module inside it) get the
    read rows' queries only (and the matching rows of a 4-d mask that has one per query); their
    output goes back on all T positions, ``fill`` elsewhere. Nothing where transformers is not
    loaded. (The lookup is patched on transformers' one table for the duration: one plan at a time
    in a process, as the oracle runs them; a nested one restores what it found.)"""
    import sys
    mu = sys.modules.get("transformers.modeling_utils")
    table = getattr(mu, "ALL_ATTENTION_FUNCTIONS", None)
    if table is None or not callable(getattr(table, "get_interface", None)):
        yield
        return
    inside = set(attn.modules())
    lookup = table.get_interface

    def get_interface(name, default):
        fn = lookup(name, default)

        def on_rows(module, query, key, value, attention_mask, *args, **kwargs):
            if module not in inside or query.ndim != 4 or query.shape[2] != T:
                return fn(module, query, key, value, attention_mask, *args, **kwargs)
            mask = attention_mask
            if isinstance(mask, torch.Tensor) and mask.ndim == 4 and mask.shape[-2] == T:
                mask = mask.index_select(2, rows)
            out, weights = fn(module, query.index_select(2, rows), key, value, mask, *args, **kwargs)
            if out.ndim != 4 or out.shape[1] != rows.numel():
                raise RuntimeError("the attention function's output is not (batch, queries, heads, size)")
            return _place(out, rows, T, fill), weights
        return on_rows
    before = table.__dict__.get("get_interface", _NONE)
    table.get_interface = get_interface
    try:
        yield
    finally:
        if before is _NONE:
            del table.__dict__["get_interface"]
        else:
            table.get_interface = before


_NONE = object()


def _structure(model, recording):
    """(B, A, the norms between them, T, the last module after B with every position, A's output
    projection, A's own query projection or None) from a recording of one pass, or None."""
    heads = blocks.find_sites(model.model)[0]
    mods = dict(model.model.named_modules())
    attn_mods = {mods[s.name] for s in heads if s.name in mods}
    calls = recording.calls
    last = max((i for i, c in enumerate(calls) if c[0] in attn_mods), default=None)
    if last is None:
        return None
    parent = calls[last][3]
    if parent < 0:
        return None
    block, b_start = calls[parent][0], calls[parent][1]
    a_start = calls[last][1]
    chain = [c for c in calls if c[3] == parent and b_start < c[1] and c[2] < a_start]
    if not all(_is_norm(c[0]) for c in chain):
        return None
    if sum(1 for c in calls if c[0] is block) != 1 or sum(1 for c in calls if c[0] is calls[last][0]) != 1:
        return None
    out = _main(calls[parent][4])
    if out is None or out.ndim < 3:
        return None
    T = int(out.shape[1])
    # the last module after B whose output still has every position (a final norm, an LM head): the
    # modules between B and it work on each position alone (the check in plan() holds them to that)
    after = [c for c in calls if c[1] > calls[parent][2]]
    seq = [c[0] for c in after if (t := _main(c[4])) is not None and t.ndim >= 3 and t.shape[1] == T]
    last_mod = seq[-1] if seq and sum(1 for c in calls if c[0] is seq[-1]) == 1 else block
    attn = calls[last][0]
    site = next((s for s in heads if mods.get(s.name) is attn), None)
    out_proj = mods.get(site.consumer) if site is not None else None
    if out_proj is not None and sum(1 for c in calls if c[0] is out_proj) != 1:
        out_proj = None
    query = None                 # the queries' own module (not one fused with the keys and values)
    if out_proj is not None and len(site.producers) > 1 and site.producers[0].name != site.producers[1].name:
        query = mods.get(site.producers[0].name)
        if query is not None and sum(1 for c in calls if c[0] is query) != 1:
            query = None
    return block, attn, [c[0] for c in chain], T, last_mod, out_proj, query


def _read_rows(model, Xb, Tb, loss: str, rp: RowPlan) -> torch.Tensor:
    """Positions of B's output where the gradient of the chunk's loss is nonzero."""
    got = {}

    def hook(module, args, out):
        t = _main(out).detach().requires_grad_()
        got["t"] = t
        return _with_main(out, t)
    h = rp.block.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            z = model(Xb)
            E = losses.per_row(z, Tb, model.output_activation, loss).sum()
            (g,) = torch.autograd.grad(E, got["t"], allow_unused=True)
    finally:
        h.remove()
    if g is None:
        return torch.zeros(0, dtype=torch.long)
    used = g.abs().flatten(2).sum(2).sum(0) != 0 if g.ndim > 2 else g.abs().sum(0) != 0
    return torch.nonzero(used).flatten()


@torch.no_grad()
def plan(model, Xb, Tb, loss: str, recording) -> RowPlan | None:
    """The checked :class:`RowPlan` of ``model`` (a GatedModel) on the chunk (Xb, Tb), or None where
    the rows cannot be cut (see the module's docstring)."""
    found = _structure(model, recording)
    if found is None:
        return None
    rp = RowPlan(*found)
    try:
        rows = _read_rows(model, Xb, Tb, loss, rp)
    except (RuntimeError, TypeError, KeyError):
        return None
    if rows.numel() == 0 or rows.numel() > MAX_SHARE * rp.T:
        return None
    rp.rows = rows.to(model.gates[0].device)

    def per_row():
        return losses.per_row(model(Xb), Tb, model.output_activation, loss).double()
    full = per_row()
    eps = torch.finfo(model.gates[0].dtype).eps
    tol = 64 * eps * (1 + full.abs())
    # A's own work cut where its code takes that; rows back on every position as late as possible
    # (after an LM head), else right after B with the LM head cut to the rows again, else right after B
    cuts = [(True, True)] if rp.query is not None else []
    cuts += [(True, False)] if rp.out_proj is not None else []
    after = rp.last
    places = [(after, None), (rp.block, after), (rp.block, None)] if after is not rp.block else [(rp.block, None)]
    for (attention, queries), (last, head) in [(c, p) for c in cuts + [(False, False)] for p in places]:
        rp.cut_attention, rp.cut_queries, rp.last, rp.head = attention, queries, last, head
        try:
            with rp.on():
                cut = per_row()
            with rp.on(fill=PROBE):
                probed = per_row()
        except (RuntimeError, TypeError, IndexError, ValueError):
            continue
        if torch.equal(cut, probed) and bool(((cut - full).abs() <= tol).all()):
            return rp
    return None
