"""Analyses of a pruning run: gain sweeps (the paper's error-surface plots) and summaries."""
from __future__ import annotations

import numpy as np
import torch

from .. import oracle
from ..context import PruningContext
from ..criteria import get_criterion, ranked
from ..pruning import Stop, violation
from ..results import PruneResult, layer_counts  # noqa: F401  (layer_counts: also read from here)


def gain_curve(model, X, T, layer: int, unit: int, gains=None, loss: str | None = "sse", *, gates=None) -> np.ndarray:
    """E while neuron (layer, unit)'s gain sweeps `gains` (default 0..10 step 0.01), all else fixed.

    gain 1 is the neuron as trained, 0 the neuron removed; ``gates`` sets the other neurons'
    gates first (e.g. a pruning run's state at some step). Exact, via the batched oracle.
    """
    ctx = PruningContext.start(model, X, T, loss)
    if gates is not None:
        ctx.model.set_gates(gates)
    gains = torch.as_tensor(np.arange(0, 10.0 + 1e-9, 0.01) if gains is None else gains, dtype=ctx.X.dtype)
    units = torch.full((gains.numel(),), int(unit), dtype=torch.long)
    return oracle.errors_with_gains(ctx, int(layer), units, gains).cpu().numpy()


def gates_at(result: PruneResult, step: int) -> list[np.ndarray]:
    """Gates before removal number `step` (0-based) of a run that started from all-ones gates."""
    gates = [np.ones(k) for k in result.hidden_sizes]
    for l, u in result.removed[:step]:
        gates[l][u] = 0.0
    return gates


def gain_surfaces(model, X, T, result: PruneResult, every: int = 10, gains=None, loss: str | None = None):
    """For the neuron removed at steps 0, every, 2*every, ...: (step, layer, unit, gains, errors),
    each swept with the net in the state just before that removal (the paper's figures 5-7)."""
    gains = np.arange(0, 10.0 + 1e-9, 0.01) if gains is None else np.asarray(gains)
    out = []
    for step in range(0, result.n_removed, every):
        l, u = result.removed[step]
        errs = gain_curve(model, X, T, l, u, gains, loss or result.loss, gates=gates_at(result, step))
        out.append((step, l, u, gains, errs))
    return out


def removable(result: PruneResult, max_accuracy_drop: float | None = None,
              max_error_increase: float | None = None, test: bool = False) -> int:
    """How many neurons the run removed before accuracy first fell more than `max_accuracy_drop`
    below its start, or the error first rose more than `max_error_increase` (relative)."""
    errs = result.test_errors if test else result.errors
    accs = result.test_accuracies if test else result.accuracies
    E0 = result.initial_test_error if test else result.initial_error
    a0 = result.initial_test_accuracy if test else result.initial_accuracy
    stop = Stop(max_accuracy_drop=max_accuracy_drop if accs is not None else None,
                max_error_increase=max_error_increase)
    for i in range(result.n_removed):
        if violation(stop, E0, a0, errs[i], None if accs is None else accs[i]):
            return i
    return result.n_removed


def flat_until(result: PruneResult, share: float = 0.05, double: bool = True) -> int:
    """How many neurons were removed before the error first rose by more than `share` of its total
    rise over the run (the end, usually every neuron removed), the point where a plot of the error on
    its own scale, as in the paper's figures, stops looking flat; with ``double``, also before it first
    exceeded twice its start (on a large rise 5 % of it can be many times the start error)."""
    if not result.errors:
        return 0
    rise = max(result.errors) - result.initial_error
    for i, e in enumerate(result.errors):
        if e - result.initial_error > share * rise or (double and e > 2 * result.initial_error):
            return i
    return result.n_removed


def oracle_agreement(model, X, T, result: PruneResult, loss: str | None = None) -> dict:
    """Replay `result`'s removals; at every step ask the exact oracle which neuron it would remove
    in that same state. Returns the share of steps where the run's choice was the oracle's, and
    per step whether it was and the regret (exact change of the run's choice minus the oracle's)."""
    # the oracle scores, and the replay removes, as the run did
    ctx = PruningContext.start(model, X, T, loss or result.loss, compensation=result.compensation)
    exact = get_criterion("brute-force")
    agrees, regret = [], []
    for l, u in result.removed:
        scores = exact.scores(ctx)
        best_l, best_u, best = ranked(scores)[0]
        agrees.append((best_l, best_u) == (l, u))
        regret.append(float(scores[l][u]) - best)
        ctx.remove(l, u)
    return {"share": float(np.mean(agrees)) if agrees else 1.0, "agrees": agrees, "regret": regret}
