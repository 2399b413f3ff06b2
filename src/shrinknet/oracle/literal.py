"""The oracle by its definition: set a gate, run the whole net, sum the loss; one pass per candidate.

The reference that the tests hold every faster path to, and the baseline the benchmarks time.
"""
from __future__ import annotations

import torch

from .. import losses
from .. import distributed as dist


@torch.no_grad()
def literal_error(ctx, gates=None) -> torch.Tensor:
    """E of one full forward pass over ctx.X, with ``gates`` (one (K,) tensor or None per group)."""
    m, outputs = ctx.model, ctx.evaluator.outputs
    if ctx.streaming:
        E = sum(losses.error(outputs(m, Xb, gates), Tb, m.output_activation, ctx.loss).double()
                for Xb, Tb in ctx.chunks(m.batch_rows))
        return dist.sum_(E).to(m.gates[0].dtype)
    return dist.sum_(losses.error(outputs(m, ctx.X, gates), ctx.T, m.output_activation, ctx.loss))


@torch.no_grad()
def literal_errors(ctx, layer: int, units, gains=None) -> torch.Tensor:
    """E with gate[layer][units[c]] set to gains[c] (default 0, switched off with the context's
    compensation), one full forward pass each; (C,)."""
    g = ctx.model.gates[layer]
    units = torch.as_tensor(units).tolist()
    out = []
    if ctx.compensation != "none" and gains is None:       # remove with compensation on a copy
        for u in units:
            work = ctx.fork()
            work.remove(layer, u)
            out.append(literal_error(work))
    else:
        gains = torch.zeros(len(units)) if gains is None else torch.as_tensor(gains)
        for u, a in zip(units, gains.tolist()):
            row = g.clone()
            row[u] = a
            gates = [None] * ctx.model.n_hidden_layers
            gates[layer] = row
            out.append(literal_error(ctx, gates))
    g = ctx.model.gates[layer]
    return torch.stack(out) if out else torch.zeros(0, dtype=g.dtype, device=g.device)
