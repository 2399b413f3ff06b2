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
* B's output is put back on every position (the rows not read hold 0), so whatever follows (a
  final norm, a pooler indexing position 0 or -1, an LM head and its loss) sees the shapes it
  expects.

This works for every attention style the registry knows (:data:`shrinknet.blocks.ATTENTION_STYLES`),
and :func:`plan` accepts it for a model and a chunk of data only after checking it: the rows the loss
reads are those where its gradient is nonzero, and the chunk's loss per sample with the rows cut must
equal the full pass's to float rounding, whatever the rows not read hold (0 or large values).
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

    def __init__(self, block, attn, chain, T: int, last=None):
        self.block, self.attn, self.chain, self.T = block, attn, chain, T
        self.last = block if last is None else last      # where the rows go back on every position
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

        def block_out(module, args, out):
            t = _main(out)
            if t is None or t.ndim < 3 or t.shape[1] != R:
                return None
            # one-hot placement (exact: x * 1 + 0, and 0 elsewhere), written without in-place writes so
            # that it runs under vmap as well
            S = torch.zeros(T, R, dtype=t.dtype, device=t.device)
            S[rows, torch.arange(R, device=t.device)] = 1
            placed = torch.einsum("tr,br...->bt...", S, t)
            if fill:
                placed = placed + fill * (1 - S.sum(1)).reshape(1, T, *([1] * (t.ndim - 2)))
            state.clear()
            return _with_main(out, placed)
        handles = [self.block.register_forward_pre_hook(block_in, with_kwargs=True),
                   self.attn.register_forward_pre_hook(attn_in, with_kwargs=True, prepend=True),
                   self.attn.register_forward_hook(attn_out),
                   self.last.register_forward_hook(block_out)]
        if self.chain:
            handles.append(self.chain[-1].register_forward_hook(chain_out))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def _structure(model, recording):
    """(B, A, norms between them) from a recording of one pass, or None."""
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
    return block, calls[last][0], [c[0] for c in chain], T, last_mod


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
    # rows back on every position as late as possible (after an LM head), else right after B
    for last in dict.fromkeys([rp.last, rp.block]):
        rp.last = last
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
