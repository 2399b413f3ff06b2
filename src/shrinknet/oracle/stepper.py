"""The brute-force choice of one step of an iterative prune, kept up to date from step to step.

Iterative brute force asks, at every step, which active neuron's removal raises E least. The MLP's
evaluator (:mod:`shrinknet.evaluators.dense`) keeps one :class:`Stepper` per run and asks its
:meth:`Stepper.best` at every step; for an MLP on the CPU (no compensation) it answers with the
compiled kernel (kernel.py) and keeps what a removal leaves valid:

* candidates of the last hidden layer: E of each, from the cached outputs, in one kernel pass;
* candidates of the layer before it: the outputs z_ij of every sample i with candidate j removed
  are stored (n x c x S numbers). Removing unit r of the last hidden layer changes each z_ij by
  one term, -g_r act(x_ijr) W_out[:, r] (x_ijr: unit r's pre-activation with j removed), so such a
  step costs O(n c S) instead of the O(n c R S) of computing z_ij afresh. Any other change (a
  removal in an earlier layer, other weights or data) computes them afresh, and so does every
  step of a ReLU net (the kernel then also tells which candidates leave every unit exactly as it
  was, which needs all units);
* earlier layers (nets of three or more hidden layers): :func:`rank1.errors_for_changes`.

For nets of one hidden layer, or two of an activation the kernel has, the whole step (both layers'
candidates, which candidates change nothing, each layer's lowest score) is one compiled call,
:func:`kernel.serial_step`, since on small nets the NumPy bookkeeping around one kernel call per
layer was a large share of a step. Other nets take one kernel call per layer.

No candidate is skipped: every E is computed, and equals the literal definition's up to float
rounding (the stored z_ij are sums in another order); candidates that change nothing get E
exactly, so exact ties stay ties. That E now is, where every E comes from the kernel (one or two
hidden layers of an activation it has), the loop's own compiled measure of the net after the last
removal (kernel.measure, not computed twice); otherwise PyTorch's sum, which the PyTorch path of the
other layers gives its candidates that change nothing. The choice is the loop's: lowest E, ties to the lowest (layer, unit); in a cost-aware prune (``costs``, one
saving per layer) the cost-aware rule of :func:`shrinknet.criteria.ranked`, which the lowest E of each
layer decides, since a layer's units all save the same.
Anything else (a GPU, compensation, other models, > 16 outputs): best() returns None and the
criterion scores every neuron.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _memory
from .._validation import non_finite_score
from . import kernel, rank1
from .cache import version_key

#: most numbers (n x c x S) kept for the stored outputs; above this they are computed every step
STORE_BUDGET = 1 << 28


def choose(picks, costs=None):
    """The step's choice from each layer's lowest (layer, unit, change in E), in layer order: the lowest
    change (the first of equal ones); with ``costs`` (per layer, what one removal saves), the cost-aware
    rule of :func:`shrinknet.criteria.ranked` (changes <= 0 first, lowest first; then change / cost)."""
    def key(p):
        v = p[2]
        if costs is None:
            return (v,)
        c = float(costs[p[0]])
        return (v > 0, v if v <= 0 else (v / c if c > 0 else np.inf), v)
    return min(picks, key=key, default=None)


class Stepper:
    """Exact brute-force choices for one iterative prune of the MLP ``model`` on (X, T) under ``loss``
    (with ``compensation`` other than "none" it never applies).

    Where the step is not one compiled call, its bookkeeping (active units, weights of the
    candidates, the choice) is done in NumPy on views of the model's tensors: it runs at every
    step, and each torch operation on a small tensor costs several microseconds."""

    def __init__(self, model, X: torch.Tensor, T: torch.Tensor, loss: str, compensation: str = "none"):
        self.model, self.X, self.T, self.loss = model, X, T, loss
        self.store = None       # z_ij of the candidates of hidden layer L-2, as of `self.seen`
        self.seen = None        # (versions of data, weights, gates before L-1; gates of L-1) at the last update
        self.applies = compensation == "none" and kernel.supports(T, loss, model.output_activation)
        self.stores = self.applies and kernel.supports(T, loss, model.output_activation, model.hidden_activation)
        self.minus = -np.ones(max(model.hidden_sizes, default=0), kernel.NUMPY.get(T.dtype, np.float64))

    @torch.no_grad()
    def best(self, cache, costs=None):
        """(layer, unit, E without it - E now) of the neuron to remove next, from ``cache`` (the MLP's
        kept pass on X with its current gates); None where this path does not apply (the loop then
        scores every neuron with the criterion). ``costs``: per layer, what removing one of its
        neurons saves, for the cost-aware choice (None: the lowest change in E)."""
        if not self.applies:
            return None
        m, T, loss = self.model, self.T, self.loss
        L, picks = m.n_hidden_layers, []
        if L == 1 or (L == 2 and self.stores):  # every E from the kernel: E0 as the loop measures it
            return self._step(cache, kernel.measure(cache.z, T, loss, m.output_activation)[0], costs)
        # E0 as the PyTorch path of the other layers sums it, for exact ties (rank1.current_error)
        E0 = rank1.current_error(m, cache, T, loss).numpy()
        ws = rank1.numpy_weights(m)
        for l, g in enumerate(m.gates):
            units = np.flatnonzero(g.numpy())
            c = units.size
            if not c:
                continue
            if l == L - 1:                           # removal moves the output layer's input only
                E, still = rank1.kernel_errors(m, cache, T, loss, l, units, (cache.out[l], units, self.minus[:c]), ws)
            elif l == L - 2 and self.stores:
                E, still = self._stored(cache, units, ws)
            else:
                E = rank1.errors_for_changes(m, cache, T, loss, l, torch.from_numpy(units),
                                              -cache.out[l][:, units]).numpy()
                still = None                        # (errors_for_changes gives those E0 itself)
            s = (E if still is None else np.where(still, E0, E)) - E0
            if not np.isfinite(s).all():
                raise non_finite_score("brute-force", l, int(units[np.flatnonzero(~np.isfinite(s))[0]]))
            k = int(np.argmin(s))                    # the first of equal minima: the lowest unit
            picks.append((l, int(units[k]), float(s[k])))
        return choose(picks, costs)

    def _step(self, cache, E0: float, costs=None):
        """best() for a net of one hidden layer, or two with the kept outputs: one compiled call
        (kernel.serial_step) scores both layers' candidates and picks each layer's lowest."""
        m, L = self.model, self.model.n_hidden_layers
        gates, out = m.gates, m.layers[-1]
        before = None
        c = int(np.count_nonzero(gates[0].numpy())) if L == 2 else 0
        if c:
            rows, gain, init = self._keep(c)
            before = (cache.pre[1], cache.out[0], gates[0], m.layers[1].weight, rows, gain, self.store, init,
                      m.hidden_activation)
        try:
            picks = kernel.serial_step(cache.z, cache.out[L - 1], gates[L - 1], out.weight, out.bias, self.T,
                                      self.loss, m.output_activation, E0, before)
        except FloatingPointError as e:
            raise non_finite_score("brute-force", L - 2 + e.args[0][0], e.args[0][1]) from None
        except Exception:
            self.store = self.seen = None    # the kept outputs may be half updated: compute them afresh
            raise
        # the lower layer first: it wins a tie
        return choose([(l, *p) for l, p in zip((L - 2, L - 1), picks) if p is not None], costs)

    def _keep(self, c: int):
        """(rows, gain, init) for the kept outputs of the c candidates of hidden layer L-2 (see
        kernel.candidate_losses), with self.store sized for them and self.seen brought up to date."""
        m, T = self.model, self.T
        L, n, S = m.n_hidden_layers, T.shape[0], T.shape[1]
        gates = m.gates
        last = gates[L - 1].numpy()
        # equal versions: the same data, weights and gates of layers < L-1 (so the same candidates)
        key = version_key([*m.weights(), self.X, self.T, *gates[:L - 1]])
        # (ReLU: the kernel tells which candidates leave every unit of L-1 as it was, for exact ties;
        # an update sees only the changed units, so ReLU nets compute afresh every step)
        if self.store is not None and m.hidden_activation != "relu" and self.seen[0] == key:
            rows = np.flatnonzero(last != self.seen[1])  # units of L-1 changed since
            gain, init = last[rows] - self.seen[1][rows], False
        else:
            rows = np.flatnonzero(last)
            gain, init = last[rows], True
            size = n * kernel.padded(c, T.dtype) * S
            if size > STORE_BUDGET:
                self.store = None
            elif self.store is None or self.store.numel() < size:
                # (a fixed budget, not one that follows the free memory: the same choices on every machine)
                _memory.check_fits(size * T.element_size(), f"X: iterative brute force on {n:,} samples",
                                   "fewer samples, or dtype=torch.float32", T.device)
                self.store = kernel.new_store(n, c, S, T.dtype)
            else:                       # candidates only ever get fewer: reuse the memory (no page faults)
                self.store = self.store[:size]
        self.seen = (key, last.copy())
        return rows, gain, init

    def _stored(self, cache, units, ws):
        """(E, changes nothing) of each of `units` (hidden layer L-2) removed, through the stored outputs."""
        m = self.model
        L = m.n_hidden_layers
        rows, gain, init = self._keep(units.size)
        try:
            # (best() gives the candidates that change nothing E0 itself, not the rounding of the stored sums)
            return rank1.before_last(m, cache, self.T, self.loss, L - 2, units,
                                      (cache.out[L - 2], units, self.minus[:units.size]), rows, gain, self.store,
                                      init, ws)
        except Exception:
            self.store = self.seen = None    # the kept outputs may be half updated: compute them afresh
            raise

