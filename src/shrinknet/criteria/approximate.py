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

from .. import oracle
from . import get_criterion, mark_removed, register_criterion


class BruteForceSubset:
    """APPROXIMATE: brute force on a fixed random share of the samples, times N / n."""

    def __init__(self, fraction: float = 0.1, seed: int = 0):
        self.fraction, self.seed = float(fraction), int(seed)
        self._key = self._idx = None

    def __call__(self, ctx):
        X, T = ctx.X, ctx.T
        if self._key is not X:
            n = max(1, int(round(self.fraction * X.shape[0])))
            g = torch.Generator().manual_seed(self.seed)
            self._idx = torch.randperm(X.shape[0], generator=g)[:n].sort().values.to(X.device)
            # the subset's context shares the model and kept forward passes, so a removal updates both
            self._key, self._sub = X, ctx.with_data(X[self._idx], T[self._idx])
        scale = X.shape[0] / self._idx.numel()
        return [s * scale for s in get_criterion("brute-force").scores(self._sub)]


class BruteForceTopK:
    """APPROXIMATE: re-score only the k best candidates of the previous step, exactly."""

    def __init__(self, k: int = 10, refresh: int = 10):
        self.k, self.refresh = int(k), int(refresh)
        self._prev = None
        self._steps = 0

    def __call__(self, ctx):
        model, prev = ctx.model, self._prev
        stale = prev is None or self._steps % self.refresh == 0 or \
            any(p.shape != g.shape for p, g in zip(prev, model.gates))
        self._steps += 1
        if stale:
            self._prev = get_criterion("brute-force").scores(ctx)
            return [s.clone() for s in self._prev]
        scores = mark_removed(model, [p.clone() for p in prev])
        flat = torch.cat(scores)
        flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("inf")), flat)
        best = torch.argsort(flat, stable=True)[: self.k]
        E0 = oracle.current_error(ctx)
        offsets = [0]
        for g in model.gates:
            offsets.append(offsets[-1] + g.numel())
        for l in range(model.n_hidden_layers):
            sel = best[(best >= offsets[l]) & (best < offsets[l + 1])] - offsets[l]
            sel = sel[model.gates[l][sel] != 0]
            if sel.numel():
                scores[l][sel] = oracle.errors_without(ctx, l, sel) - E0
        self._prev = scores
        return [s.clone() for s in scores]


def _stateful(key, make):
    # one instance per pruning run, kept in its context (a fresh context for every run)
    def fn(ctx):
        state = ctx.state.get(key)
        if state is None:
            state = ctx.state[key] = make()
        return state(ctx)
    return fn


register_criterion("brute-force-subset", _stateful("brute-force-subset", BruteForceSubset),
                   description="APPROXIMATE: brute force on a seeded random 10% of the samples")
register_criterion("brute-force-topk", _stateful("brute-force-topk", BruteForceTopK),
                   description="APPROXIMATE: re-score only the 10 best of the last step (full every 10 steps)")
