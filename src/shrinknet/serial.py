"""The brute-force choice of one step of an iterative prune, kept up to date from step to step.

Iterative brute force asks, at every step, which active neuron's removal raises E least. The
pruning loop asks the criterion for a :class:`Serial` once per prune and then calls
:meth:`Serial.best` at every step; for an MLP on the CPU (no compensation) it answers with the
compiled kernel (fused.py) and keeps what a removal leaves valid:

* candidates of the last hidden layer: E of each, from the cached outputs, in one kernel pass;
* candidates of the layer before it: the outputs z_ij of every sample i with candidate j removed
  are stored (n x c x S numbers). Removing unit r of the last hidden layer changes each z_ij by
  one term, -g_r act(x_ijr) W_out[:, r] (x_ijr: unit r's pre-activation with j removed), so such a
  step costs O(n c S) instead of the O(n c R S) of computing z_ij afresh. Any other change (a
  removal in an earlier layer, other weights or data) computes them afresh, and so does every
  step of a ReLU net (the kernel then also tells which candidates leave every unit exactly as it
  was, which needs all units);
* earlier layers (nets of three or more hidden layers): :func:`oracle.errors_for_changes`.

No candidate is skipped: every E is computed, and equals the literal definition's up to float
rounding (the stored z_ij are sums in another order); candidates that change nothing get E
exactly, so exact ties stay ties. The choice is the loop's: lowest E, ties to the lowest (layer, unit).
Anything else (a GPU, compensation, other models, > 16 outputs): best() returns None and the loop
scores every neuron with the criterion.
"""
from __future__ import annotations

import torch

from . import compensation, fused, oracle
from ._validation import ShrinkNetError
from .models import MLP, version_key

#: most numbers (n x c x S) kept for the stored outputs; above this they are computed every step
STORE_BUDGET = 1 << 28


class Serial:
    """Exact brute-force choices for one iterative prune of `model` on (X, T)."""

    def __init__(self, model, X, T, loss: str):
        self.model, self.X, self.T, self.loss = model, X, T, loss
        self.store = None       # z_ij of the candidates of hidden layer L-2, as of `self.seen`
        self.seen = None        # (parameter versions, gates) when the store was last brought up to date
        self.units = None
        self.applies = (isinstance(model, MLP) and compensation.mode_of(model) == "none"
                        and fused.supports(T, loss, model.output_activation))
        self.stores = self.applies and fused.supports(T, loss, model.output_activation, model.hidden_activation)
        self.minus = -torch.ones(max(model.hidden_sizes, default=0), dtype=T.dtype) if self.applies else None

    @torch.no_grad()
    def best(self):
        """(layer, unit, E without it - E now) of the neuron to remove next; None where this
        path does not apply (the loop then scores every neuron with the criterion)."""
        if not self.applies:
            return None
        m, T, loss = self.model, self.T, self.loss
        cache = m.cache(self.X)
        E0 = oracle.current_error(m, cache, T, loss)
        L, pick = m.n_hidden_layers, None
        for l in range(L):
            units = torch.nonzero(m.gates[l]).flatten()
            c = units.numel()
            if not c:
                continue
            if l == L - 1:                           # removal moves the output layer's input only
                E, still = oracle.kernel_errors(m, cache, T, loss, l, units, (cache.out[l], units, self.minus[:c]))
                E = torch.where(still, E0, E)
            elif l == L - 2 and self.stores:
                E = self._stored(cache, units, E0)
            else:
                E = oracle.errors_for_changes(m, cache, T, loss, l, units, -cache.out[l][:, units])
            s = E - E0
            if not bool(torch.isfinite(s).all()):    # as the loop says it for scores (pruning._check_scores)
                bad = int(torch.nonzero(~torch.isfinite(s)).flatten()[0])
                raise ShrinkNetError(f"criterion 'brute-force' gave a non-finite score to active neuron "
                                     f"(layer {l}, unit {int(units[bad])})")
            k = int(torch.argmin(s))                 # the first of equal minima: the lowest unit
            v = float(s[k])
            if pick is None or v < pick[2]:
                pick = (l, int(units[k]), v)
        return pick

    def _stored(self, cache, units, E0):
        """E with each of `units` (hidden layer L-2) removed, through the stored outputs."""
        m, T = self.model, self.T
        L, n, S, c = m.n_hidden_layers, T.shape[0], T.shape[1], units.numel()
        gates = m.gates[L - 1]
        nxt, last = m.layers[L - 1], m.layers[-1]
        seen = (version_key([*m.weights(), self.X, self.T]), [g.clone() for g in m.gates])
        # (ReLU: the kernel tells which candidates leave every unit of L-1 as it was, for exact ties;
        # an update sees only the changed units, so ReLU nets compute afresh every step)
        if (self.store is not None and m.hidden_activation != "relu" and self.seen[0] == seen[0]
                and self.units.equal(units)
                and all(a.equal(b) for a, b in zip(self.seen[1][:L - 1], seen[1][:L - 1]))):
            rows = torch.nonzero(gates != self.seen[1][L - 1]).flatten()  # units of L-1 changed since
            hidden = (gates[rows] - self.seen[1][L - 1][rows], last.weight[:, rows].T, last.bias, m.hidden_activation)
            init = False
        else:
            rows = torch.nonzero(gates).flatten()
            hidden = (gates[rows], last.weight[:, rows].T, last.bias, m.hidden_activation)
            init = True
            size = n * fused.padded(c, T.dtype) * S
            if size > STORE_BUDGET:
                self.store = None
            elif self.store is None or self.store.numel() < size:
                self.store = fused.new_store(n, c, S, T.dtype)
            else:                       # candidates only ever get fewer: reuse the memory (no page faults)
                self.store = self.store[:size]
        E, moved = fused.candidate_losses(cache.pre[L - 1][:, rows], (cache.out[L - 2], units, self.minus[:c]),
                                          nxt.weight[rows][:, units], T, self.loss, m.output_activation, hidden,
                                          self.store, init)
        self.units, self.seen = units, seen
        # E0 itself where nothing changes (see oracle.unchanged): not the rounding of the stored sums
        return torch.where(oracle.unchanged(moved, nxt.weight[gates != 0][:, units]), E0, E)
