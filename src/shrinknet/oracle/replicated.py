"""The exact oracle for any gated model: every candidate of a group in one batched forward pass.

The data are repeated once per candidate and each copy gets its own per-sample gate row, with that
candidate's gate changed (chunked so that rows x candidates stays within the model's batch_rows).
Units whose un-gated output is exactly 0 on every sample change nothing when removed: they get the
current error itself, so float rounding never ranks them.
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import inputs as batch
from .. import losses


def _chunks(model, N: int, C: int):
    """(rows of data, candidates) per forward pass so that rows x candidates <= model.batch_rows."""
    n = min(N, model.batch_rows)
    return n, max(1, min(C, model.batch_rows // n))


def replicated(model, X, T, layer, units, gate_rows):
    """For candidates `units` of `layer`: yield (z, T repeated, slice of the candidates, n, c) per
    forward pass over n data rows copied once per candidate (c of them), copy k with the gate row
    gate_rows(cs)[k] (each (K,), cs the slice of the candidates); z is (c * n, n_out), candidate-major."""
    N, C = batch.rows(X), units.numel()
    n_step, c_step = _chunks(model, N, C)
    for i in range(0, N, n_step):
        Xb = batch.take(X, slice(i, i + n_step))
        Tb = T[i:i + n_step]
        n = Tb.shape[0]
        for j in range(0, C, c_step):
            cs = slice(j, j + c_step)
            G = gate_rows(cs)                                              # (c, K)
            c = G.shape[0]
            gates = [None] * model.n_hidden_layers
            gates[layer] = G.repeat_interleave(n, 0)
            # (c * n, ...) inputs and targets
            yield model.logits(batch.repeat(Xb, c), gates), Tb.repeat(c, *([1] * (T.ndim - 1))), cs, n, c


@torch.no_grad()
def errors_with_gains(ctx, layer: int, units, gains) -> torch.Tensor:
    """E with gate[layer][units[c]] set to gains[c], for every c; (C,), summed in float64."""
    model, X, T = ctx.model, ctx.X, ctx.T
    g = model.gates[layer]
    units = torch.as_tensor(units, dtype=torch.long, device=g.device)
    gains = torch.as_tensor(gains, dtype=g.dtype, device=g.device)
    out = torch.zeros(units.numel(), dtype=torch.float64, device=g.device)

    def rows(cs):
        G = g.detach().expand(units[cs].numel(), g.numel()).clone()
        G[torch.arange(G.shape[0]), units[cs]] = gains[cs]
        return G
    for z, Tr, cs, n, c in replicated(model, X, T, layer, units, rows):
        out[cs] += losses.per_row(z, Tr, model.output_activation, ctx.loss).view(c, n).sum(1)
    return out.to(g.dtype)


@torch.no_grad()
def silent(ctx) -> list[torch.Tensor]:
    """Per group, True for units whose un-gated output is exactly 0 on every sample (kept in the
    context while the data, weights and gates are unchanged)."""
    model = ctx.model
    key = ctx.state_key()
    hit = ctx.state.get("oracle: silent units")
    if hit is not None and hit[0] == key:
        return hit[1]
    peak = [torch.zeros_like(g) for g in model.gates]
    for l, a in model.unit_outputs(ctx):
        dim = model.channel_dim(l) % a.ndim
        peak[l] = torch.maximum(peak[l], a.abs().amax(dim=[d for d in range(a.ndim) if d != dim]))
    out = [p == 0 for p in peak]
    ctx.state["oracle: silent units"] = (key, out)
    return out


@torch.no_grad()
def errors_without(ctx, layer: int, units) -> torch.Tensor:
    """E with each of `units` of `layer` switched off; (C,). Silent units get the current E exactly."""
    g = ctx.model.gates[layer]
    units = torch.as_tensor(units, dtype=torch.long, device=g.device)
    moving = ~silent(ctx)[layer][units]
    out = ctx.error().to(g.dtype).expand(units.numel()).clone()
    if moving.any():
        moved = units[moving]
        out[moving] = errors_with_gains(ctx, layer, moved, torch.zeros(moved.numel(), dtype=g.dtype))
    return out


def removal_derivatives(ctx, layer: int, units):
    """(psi'(0), psi''(0)) in float64 for psi_c(t) = E with unit c's gate moved to g_c (1 - t), t = 1 the
    removal: the replicated copies of :func:`replicated` with a scalar t per copy and a double
    backward pass (the copies are independent, so d/dt of sum(dE/dt) is the Hessian's diagonal)."""
    model, X, T = ctx.model, ctx.X, ctx.T
    g = model.gates[layer].detach()
    units = torch.as_tensor(units, dtype=torch.long, device=g.device)
    d1 = torch.zeros(units.numel(), dtype=torch.float64, device=g.device)
    d2 = torch.zeros_like(d1)
    leaf = []

    def rows(cs):
        u = units[cs]
        # gate row of copy c: g + t_c d_c with d_c = -g_u e_u, so t_c = 1 is the removal
        t = torch.zeros(u.numel(), dtype=g.dtype, device=g.device, requires_grad=True)
        leaf[:] = [t]
        D = torch.zeros(u.numel(), g.numel(), dtype=g.dtype, device=g.device)
        D[torch.arange(u.numel()), u] = -g[u]
        return g + t[:, None] * D
    # the math kernel of scaled_dot_product_attention: the fused CPU kernels have no second derivative
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        for z, Tr, cs, n, c in replicated(model, X, T, layer, units, rows):
            E = losses.error(z, Tr, model.output_activation, ctx.loss)
            (first,) = torch.autograd.grad(E, leaf[0], create_graph=True)
            (sec,) = torch.autograd.grad(first.sum(), leaf[0])
            d1[cs] += first.detach().double()
            d2[cs] += sec.double()
    return d1, d2
