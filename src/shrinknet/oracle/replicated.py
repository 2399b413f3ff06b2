"""The exact oracle for any gated model: every candidate of a group in one batched forward pass.

Errors of candidates (:func:`errors_with_gains`, :func:`errors_without`) first go through
:mod:`.downstream` (what lies upstream of the gate replayed from one recording, the last block cut to
the rows the loss reads, the candidates looped or vmapped as measured). Where the model cannot be
replayed (:class:`~shrinknet.oracle.upstream.ReplayMismatch`), the model runs under
``torch.func.vmap`` over the candidates' gate rows. Every tensor that does not depend on the gate
(the layers upstream of the unit, the attention masks, the weights) stays unbatched and is computed
once; from the gate on, each candidate's copy flows through the downstream layers together. Chunked so
that rows x candidates x the activations from the gate on stay within VMAP_BUDGET. Attention runs in the math kernel there
(the fused CPU kernels have no batching rule: vmap would loop over the candidates one by one).

Where vmap cannot run a model (an operation without a batching rule that does not fall back, an
in-place write of a candidate's tensor into a shared one), the data are repeated once per candidate
instead and each copy gets its own per-sample gate row (:func:`replicated`; also the double-backward
path of :func:`removal_derivatives`). Either way exact.

Units whose un-gated output is exactly 0 on every sample change nothing when removed: they get the
current error itself, so float rounding never ranks them.
"""
from __future__ import annotations

import warnings

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import distributed as dist
from .. import inputs as batch
from .. import losses
from .. import pooling
from . import downstream, upstream


def _chunks(model, N: int, C: int):
    """(rows of data, candidates) per forward pass so that rows x candidates <= model.batch_rows."""
    n = min(N, model.batch_rows)
    return n, max(1, min(C, model.batch_rows // n))


#: module-output values (from the gate on, summed over the layers) one vmapped pass may hold: a model's
#: functional intermediates (attention scores) come on top. Larger chunks than this ran slower on a ViT
#: (docs/PERFORMANCE.md), smaller ones recompute the layers before the gate more often.
VMAP_BUDGET = 1 << 25


def _vmap_chunks(model, layer: int, N: int, C: int):
    """(rows of data, candidates) per vmapped pass: the rows of a plain pass, and as many candidates
    as keep rows x candidates x (the activations from the gate on) within VMAP_BUDGET."""
    sizes = getattr(model, "downstream", None)       # (a GatedModel pickled before it had them: plain chunks)
    if not sizes:
        return _chunks(model, N, C)
    n = min(N, model.batch_rows)
    return n, max(1, min(C, VMAP_BUDGET // (n * max(1, sizes[layer]))))


def replicated(model, data, layer, units, gate_rows):
    """For candidates `units` of `layer`: yield (z, T repeated, slice of the candidates, n, c) per
    forward pass over n rows of ``data`` (an :class:`shrinknet.inputs.Data`) copied once per candidate
    (c of them), copy k with the gate row gate_rows(cs)[k] (each (K,), cs the slice of the
    candidates); z is (c * n, n_out), candidate-major."""
    C = units.numel()
    n_step, c_step = _chunks(model, data.rows(model.batch_rows), C)
    for Xb, Tb in data.chunks(n_step):
        n = Tb.shape[0]
        for j in range(0, C, c_step):
            cs = slice(j, j + c_step)
            G = gate_rows(cs)                                              # (c, K)
            c = G.shape[0]
            gates = [None] * model.n_hidden_layers
            gates[layer] = G.repeat_interleave(n, 0)
            # (c * n, ...) inputs and targets
            yield model.logits(batch.repeat(Xb, c), gates), Tb.repeat(c, *([1] * (Tb.ndim - 1))), cs, n, c


class VmapState:
    """Whether vmap has run a model: after its first failure the data are replicated instead (one
    warning per run, not one per step); ``choice``: per group, how its candidates run
    (:class:`shrinknet.oracle.downstream.Choice`); ``replay``: whether the model's upstream calls
    replay (:mod:`shrinknet.oracle.upstream`)."""

    def __init__(self):
        self.ok = True
        self.replay = True
        self.choice = downstream.Choice()


@torch.no_grad()
def errors_with_gains(model, data, loss: str, layer: int, units, gains, vmap_state: VmapState | None = None) -> torch.Tensor:
    """E of ``model`` on ``data`` under ``loss`` with gate[layer][units[c]] set to gains[c], for every c;
    (C,), summed in float64 (and over every rank)."""
    # the pools patched around the whole call, not only in GatedModel.forward: the oracle's recording and
    # replay patch every module's forward first, which GatedModel.forward then leaves alone
    with pooling.strided_max_pooling(getattr(model, "_pools", ())):
        return _errors_with_gains(model, data, loss, layer, units, gains, vmap_state)


def _errors_with_gains(model, data, loss: str, layer: int, units, gains, vmap_state) -> torch.Tensor:
    vmap_state = VmapState() if vmap_state is None else vmap_state
    g = model.gates[layer]
    units = torch.as_tensor(units, dtype=torch.long, device=g.device)
    gains = torch.as_tensor(gains, dtype=g.dtype, device=g.device)

    def rows(cs):
        G = g.detach().expand(units[cs].numel(), g.numel()).clone()
        G[torch.arange(G.shape[0]), units[cs]] = gains[cs]
        return G
    if getattr(vmap_state, "replay", False):
        try:
            return dist.sum_(_downstream(model, data, loss, layer, units.numel(), rows, vmap_state)).to(g.dtype)
        except upstream.ReplayMismatch:
            vmap_state.replay = False            # control flow before the gate that the recording missed
    if vmap_state.ok:
        try:
            return dist.sum_(_vmapped(model, data, loss, layer, units.numel(), rows)).to(g.dtype)
        except (RuntimeError, NotImplementedError, ValueError) as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise                         # not vmap's limit: the copies would need more memory still
            vmap_state.ok = False
            warnings.warn(f"the exact oracle cannot run this model under torch.func.vmap ({type(e).__name__}: "
                          f"{str(e)[:200]}); it runs one copy of the data per candidate instead, which gives the "
                          f"same errors more slowly", RuntimeWarning, stacklevel=3)
    out = torch.zeros(units.numel(), dtype=torch.float64, device=g.device)
    for z, Tr, cs, n, c in replicated(model, data, layer, units, rows):
        out[cs] += losses.per_row(z, Tr, model.output_activation, loss).view(c, n).sum(1)
    return dist.sum_(out).to(g.dtype)


def _downstream(model, data, loss, layer, C: int, gate_rows, state: VmapState) -> torch.Tensor:
    """:func:`shrinknet.oracle.downstream.errors` (upstream replayed; loop or vmap as measured), with
    vmap given up (warned once) where it cannot run the model."""
    n_step, c_vmap = _vmap_chunks(model, layer, data.rows(model.batch_rows), C)
    try:
        return downstream.errors(model, data, loss, layer, C, gate_rows, n_step, c_vmap, state.choice, state.ok)
    except downstream.VMAP_ERRORS as e:
        if isinstance(e, (torch.OutOfMemoryError, upstream.ReplayMismatch)) or not state.ok:
            raise
        state.ok = False
        state.choice.by_group.clear()
        warnings.warn(f"the exact oracle cannot run this model under torch.func.vmap ({type(e).__name__}: "
                      f"{str(e)[:200]}); it runs one pass per candidate instead, which gives the same errors",
                      RuntimeWarning, stacklevel=4)
    return downstream.errors(model, data, loss, layer, C, gate_rows, n_step, c_vmap, state.choice, False)


def _vmapped(model, data, loss, layer, C: int, gate_rows) -> torch.Tensor:
    """(C,) float64: E of each candidate's gate row on this rank's data, the model run under vmap over
    the rows."""
    from torch.func import vmap
    out = torch.zeros(C, dtype=torch.float64, device=model.gates[layer].device)
    n_step, c_step = _vmap_chunks(model, layer, data.rows(model.batch_rows), C)
    for Xb, Tb in data.chunks(n_step):

        def error(row, Xb=Xb, Tb=Tb):
            with model.overriding({layer: row}):
                z = model(Xb)
            return losses.per_row(z, Tb, model.output_activation, loss).double().sum()
        for j in range(0, C, c_step):
            cs = slice(j, j + c_step)
            with sdpa_kernel(SDPBackend.MATH):
                out[cs] += vmap(error)(gate_rows(cs))
    return out


@torch.no_grad()
def silent(model, data) -> list[torch.Tensor]:
    """Per group, True for units whose un-gated output is exactly 0 on every sample of ``data`` (and
    every rank's)."""
    peak = [torch.zeros_like(g) for g in model.gates]
    for l, a in model.unit_outputs(data.chunks(model.batch_rows)):
        dim = model.channel_dim(l) % a.ndim
        peak[l] = torch.maximum(peak[l], a.abs().amax(dim=[d for d in range(a.ndim) if d != dim]))
    return [dist.max_(p) == 0 for p in peak]


@torch.no_grad()
def errors_without(model, data, loss: str, layer: int, units, E: torch.Tensor, silent_units: torch.Tensor,
                   vmap_state: VmapState | None = None) -> torch.Tensor:
    """E with each of `units` of `layer` switched off; (C,). Silent units (``silent_units``, the
    group's mask from :func:`silent`) get the current error ``E`` exactly."""
    g = model.gates[layer]
    units = torch.as_tensor(units, dtype=torch.long, device=g.device)
    moving = ~silent_units[units]
    out = E.to(g.dtype).expand(units.numel()).clone()
    if moving.any():
        moved = units[moving]
        out[moving] = errors_with_gains(model, data, loss, layer, moved, torch.zeros(moved.numel(), dtype=g.dtype),
                                        vmap_state)
    return out


def removal_derivatives(model, data, loss: str, layer: int, units):
    """(psi'(0), psi''(0)) in float64 for psi_c(t) = E with unit c's gate moved to g_c (1 - t), t = 1 the
    removal: the replicated copies of :func:`replicated` with a scalar t per copy and a double
    backward pass (the copies are independent, so d/dt of sum(dE/dt) is the Hessian's diagonal)."""
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
        for z, Tr, cs, n, c in replicated(model, data, layer, units, rows):
            E = losses.error(z, Tr, model.output_activation, loss)
            (first,) = torch.autograd.grad(E, leaf[0], create_graph=True)
            (sec,) = torch.autograd.grad(first.sum(), leaf[0])
            d1[cs] += first.detach().double()
            d2[cs] += sec.double()
    return dist.sum_(d1), dist.sum_(d2)
