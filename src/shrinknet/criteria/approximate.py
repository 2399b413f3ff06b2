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

from .. import inputs as batch
from .._validation import ShrinkNetError
from .. import oracle
from ._registry import get_criterion, mark_removed, register_criterion


class BruteForceSubset:
    """APPROXIMATE: brute force on a fixed random share of the samples, times N / n. The subset is kept
    in the pruning context, so one instance serves any number of runs."""

    def __init__(self, fraction: float = 0.1, seed: int = 0):
        self.fraction, self.seed = float(fraction), int(seed)
        self.__name__ = f"brute-force-subset({self.fraction:g})"

    def indices(self, n: int) -> torch.Tensor:
        """The samples (sorted) this criterion scores out of n: a seeded draw of round(fraction n)."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n, generator=g)[:max(1, int(round(self.fraction * n)))].sort().values

    def __call__(self, ctx):
        X, T = ctx.X, ctx.T
        sub = ctx.state.get(self)
        if sub is None and ctx.streaming:
            raise ShrinkNetError(f"criterion {self.__name__!r}: draws a subset of the samples, which needs them in "
                                 f"memory; expected tensors, got a DataLoader")
        if sub is None:
            idx = self.indices(T.shape[0]).to(T.device)
            # the subset's context shares the model and kept forward passes, so a removal updates both
            sub = ctx.state[self] = ctx.with_data(batch.take(X, idx), T[idx])
        scale = T.shape[0] / sub.T.shape[0]
        return [s * scale for s in get_criterion("brute-force").scores(sub)]


class BruteForceTopK:
    """APPROXIMATE: re-score only the k best candidates of the previous step, exactly. The previous
    scores are kept in the pruning context, so one instance serves any number of runs."""

    def __init__(self, k: int = 10, refresh: int = 10):
        self.k, self.refresh = int(k), int(refresh)
        self.__name__ = f"brute-force-topk({self.k})"

    def __call__(self, ctx):
        model = ctx.model
        prev, steps = ctx.state.get(self, (None, 0))
        stale = prev is None or steps % self.refresh == 0 or \
            any(p.shape != g.shape for p, g in zip(prev, model.gates))
        if stale:
            prev = get_criterion("brute-force").scores(ctx)
            ctx.state[self] = (prev, steps + 1)
            return [s.clone() for s in prev]
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
        ctx.state[self] = (scores, steps + 1)
        return [s.clone() for s in scores]


register_criterion("brute-force-subset", BruteForceSubset(),
                   description="APPROXIMATE: brute force on a seeded random 10% of the samples")
register_criterion("brute-force-topk", BruteForceTopK(),
                   description="APPROXIMATE: re-score only the 10 best of the last step (full every 10 steps)")
