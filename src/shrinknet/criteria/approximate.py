"""APPROXIMATE accelerations of the brute-force oracle (options, never the default).

Both trade exactness for speed; ``benchmarks/oracle.py`` reports how often they make the oracle's
decision and how far their error drifts from the exact serial prune.

    brute-force-subset   exact dE_k, but on a seeded random 10 % of the evaluation samples
                         (scaled back to the whole set). ``BruteForceSubset(fraction, seed)``
                         for other shares.
    brute-force-topk     after one full exact scoring, each step re-scores exactly only the
                         k = 10 neurons that scored best the step before, keeping the others'
                         stale scores; everything is re-scored every 10 steps.
                         ``BruteForceTopK(k, refresh)`` for other values.
"""
from __future__ import annotations

import torch

from . import get_criterion, mark_removed, register_criterion
from .brute_force import error_now, errors_without


class BruteForceSubset:
    """APPROXIMATE: brute force on a fixed random share of the samples, times N / n."""

    def __init__(self, fraction: float = 0.1, seed: int = 0):
        self.fraction, self.seed = float(fraction), int(seed)
        self._key = self._idx = None

    def __call__(self, model, X, T, loss):
        if self._key is not X:
            n = max(1, int(round(self.fraction * X.shape[0])))
            g = torch.Generator().manual_seed(self.seed)
            self._idx = torch.randperm(X.shape[0], generator=g)[:n].sort().values.to(X.device)
            self._key, self._Xs, self._Ts = X, X[self._idx], T[self._idx]
        scale = X.shape[0] / self._idx.numel()
        return [s * scale for s in get_criterion("brute-force", model)(model, self._Xs, self._Ts, loss)]


class BruteForceTopK:
    """APPROXIMATE: re-score only the k best candidates of the previous step, exactly."""

    def __init__(self, k: int = 10, refresh: int = 10):
        self.k, self.refresh = int(k), int(refresh)
        self._prev = None
        self._steps = 0

    def __call__(self, model, X, T, loss):
        prev = self._prev
        stale = prev is None or self._steps % self.refresh == 0 or \
            any(p.shape != g.shape for p, g in zip(prev, model.gates))
        self._steps += 1
        if stale:
            self._prev = get_criterion("brute-force", model)(model, X, T, loss)
            return [s.clone() for s in self._prev]
        scores = mark_removed(model, [p.clone() for p in prev])
        flat = torch.cat(scores)
        flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("inf")), flat)
        best = torch.argsort(flat, stable=True)[: self.k]
        E0 = error_now(model, X, T, loss)
        offsets = [0]
        for g in model.gates:
            offsets.append(offsets[-1] + g.numel())
        for l in range(model.n_hidden_layers):
            sel = best[(best >= offsets[l]) & (best < offsets[l + 1])] - offsets[l]
            sel = sel[model.gates[l][sel] != 0]
            if sel.numel():
                scores[l][sel] = errors_without(model, X, T, loss, l, sel) - E0
        self._prev = scores
        return [s.clone() for s in scores]


def _stateful(attr, make):
    # a criterion looked up by name is a plain function, so its state between the steps of one run
    # lives on the model copy that the pruning loop works on (a fresh copy for every run)
    def fn(model, X, T, loss):
        return model.__dict__.setdefault(attr, make())(model, X, T, loss)
    return fn


register_criterion("brute-force-subset", _stateful("_subset_state", BruteForceSubset), generic=True,
                   description="APPROXIMATE: brute force on a seeded random 10% of the samples")
register_criterion("brute-force-topk", _stateful("_topk_state", BruteForceTopK), generic=True,
                   description="APPROXIMATE: re-score only the 10 best of the last step (full every 10 steps)")
