"""Exact error of the net with one neuron's gain changed, for many (neuron, gain) pairs at once.

The brute-force criterion (every neuron switched off in turn) and the gain sweeps (one
neuron's gain over 0..10) are both "change one gate, re-evaluate E". Done literally this is
one full forward pass per candidate. Here it is exact but cheaper:

* layers upstream of the neuron are unchanged, so their cached activations are reused;
* changing the gain of neuron k of hidden layer l changes the next layer's pre-activations
  by a rank-1 term, (a - g_k) f(x_lk) * W_{l+1}[:, k], computed for a whole chunk of
  candidates at once as a batched tensor op;
* downstream, only neurons still active are computed (removed ones contribute nothing);
* on the CPU, for candidates with at most one hidden layer after them, a compiled kernel
  (kernel.py) does all of that and the loss in one pass that writes only the C sums;
* chunks over candidates and samples bound the memory used.

Every value equals E(net with that one gate changed) up to float rounding; the tests
compare with :func:`shrinknet.oracle.literal_errors`, which really runs one forward pass per candidate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import losses
from . import kernel

if TYPE_CHECKING:
    from ..models import MLP
    from .cache import Cache

#: elements of the widest intermediate tensor per chunk (4 bytes each in float32): small on a
#: CPU, so a chunk's several passes stay in cache; large on a GPU, so kernel launches are few
DEFAULT_CHUNK = 1 << 20
GPU_CHUNK = 1 << 27


class _Rank1:
    """What every candidate of one hidden layer shares: the cached input of the next layer
    (active rows only), the next layer's weight columns for the candidates, and a chunking
    of (samples x candidates) that bounds the widest intermediate tensor."""

    def __init__(self, model: MLP, cache: Cache, T: torch.Tensor, layer: int, units, chunk: int | None):
        if chunk is None:
            chunk = DEFAULT_CHUNK if T.device.type == "cpu" else GPU_CHUNK
        self.model, self.T, self.layer = model, T, layer
        self.units = torch.as_tensor(units, device=T.device, dtype=torch.long)
        L = model.n_hidden_layers
        self.actives = [torch.nonzero(g != 0).flatten() for g in model.gates]
        # rows of the next linear layer that matter: active units of the next hidden layer, or all outputs
        self.rows = self.actives[layer + 1] if layer + 1 < L else None
        W = model.layers[layer + 1].weight                                        # (K_{l+1}, K_l)
        self.Wc = W[:, self.units] if self.rows is None else W[self.rows][:, self.units]  # (R, C)
        self.base = cache.z if self.rows is None else cache.pre[layer + 1][:, self.rows]  # (N, R)
        N, C = self.base.shape[0], self.units.numel()
        self.down = _compact_downstream(model, layer + 1, self.actives, self.rows)
        if self.rows is not None and model.hidden_activation == "relu":          # (N, R), for loss()'s check
            self.act_next = cache.act[layer + 1][:, self.rows]
        widths = [len(a) for a in self.actives[layer + 1:]] + [T.shape[1]]
        width = max(widths + [self.base.shape[1]])
        # all candidates in a chunk where possible, so each chunk reads whole (contiguous) sample rows
        self.c_step = max(1, min(C, chunk // width))
        self.n_step = max(1, min(N, chunk // (self.c_step * width)))
        self.N, self.C = N, C

    def chunks(self):
        for n0 in range(0, self.N, self.n_step):
            for c0 in range(0, self.C, self.c_step):
                yield slice(n0, n0 + self.n_step), slice(c0, c0 + self.c_step)

    def loss(self, sl, cs, dh, loss: str):
        """Summed loss of samples sl when candidate c's output changes by dh[:, c], (c,); and, for
        ReLU nets, which candidates leave the next layer's activations exactly as they were
        ((c,) bool, else None). One buffer is reused in place through the layers, to save memory passes."""
        act, down, same = self.model.activation, self.down, None
        x = torch.addcmul(self.base[sl, None, :], dh[:, :, None], self.Wc[:, cs].T[None])  # (n, c, R)
        for k, (gate, Wt, b) in enumerate(down):                                  # on to the output z
            h = act.inplace(x)
            if k == 0 and self.model.hidden_activation == "relu":
                same = (h == self.act_next[sl, None, :]).all(2).all(0)
            if not bool((gate == 1).all()):
                h.mul_(gate)
            n, c, r = h.shape
            x = torch.addmm(b, h.reshape(n * c, r), Wt).view(n, c, Wt.shape[1])
        return losses.total_(x, self.T[sl, None, :], self.model.output_activation, loss), same


@torch.no_grad()
def perturbed_errors(model: MLP, cache: Cache, T: torch.Tensor, loss: str, layer: int,
                     units, gains, chunk: int | None = None) -> torch.Tensor:
    """E with gate[layer][units[c]] set to gains[c], for every c; returns (C,).

    cache: the kept forward pass for the current gates (PruningContext.cache); T: (N, n_out) targets.
    """
    units = torch.as_tensor(units, device=T.device, dtype=torch.long)
    gains = torch.as_tensor(gains, device=T.device, dtype=T.dtype)
    dh = cache.act[layer][:, units] * (gains - model.gates[layer][units])   # (N, C)
    return errors_for_changes(model, cache, T, loss, layer, units, dh, chunk)


@torch.no_grad()
def errors_for_changes(model: MLP, cache: Cache, T: torch.Tensor, loss: str, layer: int,
                       units, dh: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """E when candidate c's output (neuron units[c] of `layer`) changes by dh[:, c]; returns (C,)."""
    kernel = kernel_errors(model, cache, T, loss, layer, units, dh)
    if kernel is None:
        r = _Rank1(model, cache, T, layer, units, chunk)
        out = torch.zeros(r.C, dtype=T.dtype, device=T.device)
        still = ~(dh != 0).any(0)
        same = torch.ones_like(still)
        for sl, cs in r.chunks():
            part, s = r.loss(sl, cs, dh[sl, cs], loss)
            out[cs] += part
            if s is not None:
                same[cs] &= s
        if model.hidden_activation == "relu" and r.rows is not None:
            still |= same
    else:
        out, still = torch.from_numpy(kernel[0]), torch.from_numpy(kernel[1])
    # A candidate whose output does not change at all (a dead ReLU unit, gain = gate), or whose
    # change leaves the next layer's activations exactly as they were (ReLU units kept below 0),
    # leaves E exactly as it is; return that very number, so exact ties stay exact ties and are
    # broken by index, as with the literal definition, instead of by rounding noise.
    if still.any():
        out[still] = current_error(model, cache, T, loss)
    return out


@torch.no_grad()
def output_scaling_derivatives(model: MLP, cache: Cache, T: torch.Tensor, loss: str, layer: int,
                               units, chunk: int | None = None, direction: torch.Tensor | None = None):
    """psi'(0) and psi''(0) for psi_c(t) = E with neuron c's output o_c scaled to (1 + t) o_c
    (or moved to o_c + t direction[:, c], where a direction (N, C) is given).

    psi'(0) = sum_n o_cn dE_n/do_cn and psi''(0) = sum_n o_cn^2 d2E_n/do_cn^2, exactly (every
    cross term downstream included): second-order forward-mode differentiation written out.
    Along the path, the next layer's pre-activations move by t o_c w_c (first tangent o_c w_c,
    second tangent 0); a layer h = g f(x) maps tangents (dx, ddx) to (g f' dx, g (f'' dx^2 + f' ddx)),
    a linear layer maps them by its weights. The primal values are the cached activations.
    Returns two (C,) tensors.
    """
    r = _Rank1(model, cache, T, layer, units, chunk)
    act, L = model.activation, model.n_hidden_layers
    out = cache.out[layer][:, r.units] if direction is None else direction   # (N, C)
    d1 = torch.zeros(r.C, dtype=T.dtype, device=T.device)
    d2 = torch.zeros_like(d1)
    derivs = []  # f'(x) g and f''(x) g of the downstream hidden layers, active units only
    for m in range(layer + 1, L):
        rows = r.actives[m]
        x, a, g = cache.pre[m][:, rows], cache.act[m][:, rows], model.gates[m][rows]
        derivs.append((act.d1(x, a) * g, act.d2(x, a) * g))
    for sl, cs in r.chunks():
        dx = out[sl, cs, None] * r.Wc[:, cs].T[None]                       # (n, c, R)
        ddx = torch.zeros_like(dx)
        for (f1, f2), (_, Wt, _) in zip(derivs, r.down):
            f1, f2 = f1[sl, None, :], f2[sl, None, :]
            dx, ddx = (f1 * dx) @ Wt, (f2 * dx * dx + f1 * ddx) @ Wt
        a, b = losses.directional(cache.z[sl, None, :], T[sl, None, :], model.output_activation, loss, dx, ddx)
        d1[cs] += a.sum(0)
        d2[cs] += b.sum(0)
    return d1, d2


def kernel_errors(model: MLP, cache: Cache, T, loss: str, layer: int, units, moves, ws=None):
    """(E for each candidate, which candidates change nothing) as NumPy arrays, through the compiled
    kernel; or None where it does not apply (GPU, wide outputs, two or more hidden layers
    downstream, an activation it lacks). moves: dh (N, C), or (src, idx, f) for
    dh[:, c] = src[:, idx[c]] * f[c] (kernel.py). ws: numpy_weights(model), if the caller has them."""
    L, out_act = model.n_hidden_layers, model.output_activation
    if layer == L - 1:                                  # the move reaches the output layer directly
        if not kernel.supports(T, loss, out_act):
            return None
        w = (ws or numpy_weights(model))[-2][:, _index(units)]
        E, moved = kernel.candidate_losses_np(cache.z, moves, w, T, loss, out_act)
        return E, unchanged(moved, w)
    if layer != L - 2 or not kernel.supports(T, loss, out_act, model.hidden_activation):
        return None
    g = model.gates[layer + 1].numpy()
    rows = np.flatnonzero(g)                            # active units of the next layer
    return before_last(model, cache, T, loss, layer, units, moves, rows, g[rows], ws=ws)


def before_last(model: MLP, cache: Cache, T, loss: str, layer: int, units, moves, rows, gate,
                store=None, init: bool = True, ws=None):
    """kernel_errors for candidates of hidden layer L-2 (layer). rows: the active units of the last
    hidden layer, gate their gains; or, with a store (kernel.candidate_losses) and init=False, the
    units changed since the stored outputs were brought up to date, gate their change of gain.
    Returns (E, which candidates change nothing)."""
    units = _index(units)
    ws = ws or numpy_weights(model)
    W, Wout, b = ws[2 * layer + 2], ws[-2], ws[-1]
    w = W[np.ix_(rows, units)]
    E, moved = kernel.candidate_losses_np(cache.pre[layer + 1], moves, w, T, loss, model.output_activation,
                                         (gate, Wout[:, rows].T, b, model.hidden_activation), store, init,
                                         cols=rows)
    # the weights to every active unit of the next layer count, not only to the changed ones
    reach = w if init else W[np.ix_(np.flatnonzero(model.gates[layer + 1].numpy()), units)]
    return E, unchanged(moved, reach)


def unchanged(moved: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(C,) bool: candidates that change nothing downstream, from the kernel's `moved` flags and
    their weights w (R, C) to the active units of the next layer: no change of their output
    anywhere (a dead ReLU unit), no nonzero weight to an active unit, or (ReLU) moves that leave
    every unit of the next layer as it was. The literal definition gives E exactly as it is for
    all of them, so they get that very number and exact ties stay ties, broken by index."""
    return ~(moved & w.any(0))


def numpy_weights(model: MLP) -> list[np.ndarray]:
    """A CPU MLP's weights and biases [W_0, b_0, W_1, b_1, ...] as NumPy arrays (views, no copies)."""
    return [t.detach().numpy() for t in model.weights()]


def _index(units) -> np.ndarray:
    return units.cpu().numpy() if isinstance(units, torch.Tensor) else np.asarray(units)


def _compact_downstream(model: MLP, first: int, actives, rows):
    """For hidden layers first..L-1 (active units only): (gate, W, b) of each step to the output."""
    L, steps = model.n_hidden_layers, []
    for m in range(first, L):
        nxt = actives[m + 1] if m + 1 < L else None
        W, b = model.layers[m + 1].weight, model.layers[m + 1].bias
        W = W[:, rows] if nxt is None else W[nxt][:, rows]
        steps.append((model.gates[m][rows], W.T.contiguous(), b if nxt is None else b[nxt]))
        rows = nxt
    return steps


@torch.no_grad()
def current_error(model: MLP, cache: Cache, T: torch.Tensor, loss: str) -> torch.Tensor:
    """E of the net as it is, summed as the PyTorch path sums every candidate's E: a candidate
    that changes nothing then gets exactly this number there, and exact ties stay ties."""
    return losses.total(cache.z, T, model.output_activation, loss)
