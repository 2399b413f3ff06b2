"""The pruning loop: single overall ranking or iterative re-ranking, with stopping criteria.

The loop knows nothing about criteria beyond their common signature (see
:mod:`shrinknet.criteria`); it only ranks the scores they return, switches the chosen
neuron's gate to 0 and measures the error and accuracy that result.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import compensation as comp
from . import losses
from ._validation import ShrinkNetError, check_choice, check_fraction, check_inputs, check_targets
from .criteria import criterion_name, get_criterion
from .metrics import has_classes, measure
from .models import MLP, as_mlp
from .results import PruneResult

SCHEDULES = ("single", "iterative")


@dataclass
class Stop:
    """When to stop removing neurons; any criterion that is met stops the loop.

    Parameters
    ----------
    n_neurons : int, optional
        Remove at most this many neurons.
    fraction : float, optional
        Remove at most this fraction (0..1) of the hidden neurons active at the start.
    max_accuracy_drop : float, optional
        Never let evaluation accuracy fall more than this (absolute, 0..1) below its
        starting value; the removal that would do so is not made.
    max_error_increase : float, optional
        Never let the evaluation error exceed (1 + this) times its starting value
        (0.1 = +10%); the removal that would do so is not made.

    With no criterion at all, every hidden neuron is removed.
    """
    n_neurons: int | None = None
    fraction: float | None = None
    max_accuracy_drop: float | None = None
    max_error_increase: float | None = None

    def __post_init__(self):
        if self.n_neurons is not None and (int(self.n_neurons) != self.n_neurons or self.n_neurons < 0):
            raise ShrinkNetError(f"stop.n_neurons: expected a non-negative integer, got {self.n_neurons!r}")
        self.fraction = check_fraction(self.fraction, "stop.fraction")
        self.max_accuracy_drop = check_fraction(self.max_accuracy_drop, "stop.max_accuracy_drop")
        self.max_error_increase = check_fraction(self.max_error_increase, "stop.max_error_increase", 0.0, math.inf)

    def limit(self, n_active: int) -> int:
        """Most neurons that may be removed, from the count-type criteria."""
        lim = n_active
        if self.n_neurons is not None:
            lim = min(lim, int(self.n_neurons))
        if self.fraction is not None:
            lim = min(lim, int(math.floor(self.fraction * n_active + 1e-9)))
        return lim

    @classmethod
    def coerce(cls, stop) -> "Stop":
        if stop is None:
            return cls()
        if isinstance(stop, cls):
            return stop
        if isinstance(stop, dict):
            try:
                return cls(**stop)
            except TypeError as e:
                raise ShrinkNetError(f"stop: {e}") from None
        if isinstance(stop, (int, np.integer)) and not isinstance(stop, bool):
            return cls(n_neurons=int(stop))
        raise ShrinkNetError(f"stop: expected shrinknet.Stop, a dict of its fields or an int, got {stop!r}")


def prepare(model, X, T, loss: str, dtype=None, device=None):
    """Validate inputs and return (working copy of the model, X, T) as tensors on one device."""
    src = as_mlp(model)
    src.check_finite()
    loss = losses.check_loss(loss)
    dtype = dtype or src.layers[0].weight.dtype
    work = src.clone(dtype=dtype, device=device)
    X = check_inputs(X, work.sizes[0], dtype, device)
    T = check_targets(T, X.shape[0], work.sizes[-1], dtype, device)
    return src, work, X, T


def _check_scores(scores, model: MLP, name: str) -> list[torch.Tensor]:
    if len(scores) != model.n_hidden_layers:
        raise ShrinkNetError(f"criterion {name!r}: expected {model.n_hidden_layers} score arrays "
                             f"(one per hidden layer), got {len(scores)}")
    out = []
    for l, (s, g) in enumerate(zip(scores, model.gates)):
        s = torch.as_tensor(s, dtype=g.dtype, device=g.device)
        if s.shape != g.shape:
            raise ShrinkNetError(f"criterion {name!r}: expected scores of shape {tuple(g.shape)} for hidden "
                                 f"layer {l}, got {tuple(s.shape)}")
        bad = torch.nonzero((g != 0) & ~torch.isfinite(s)).flatten()
        if bad.numel():
            raise ShrinkNetError(f"criterion {name!r} gave a non-finite score to active neuron "
                                 f"(layer {l}, unit {int(bad[0])})")
        out.append(torch.where(g != 0, s, torch.full_like(s, float("nan"))))
    return out


def score(model, X, T, criterion: str = "taylor2", loss: str = "sse", *, dtype=None, device=None) -> list[np.ndarray]:
    """Each hidden neuron's estimated change in error when it is switched off.

    Parameters
    ----------
    model : MLP or nn.Sequential
    X : (N, n_in) array;  T : (N, n_out) array (or integer labels, or (N,) for one output)
    criterion : str or callable, a name from :func:`shrinknet.available_criteria`
    loss : {"sse", "cross-entropy"}

    Returns
    -------
    list of (K_l,) NumPy arrays, one per hidden layer; NaN for neurons already removed.
    """
    _, work, X, T = prepare(model, X, T, loss, dtype, device)
    name = criterion_name(criterion)
    scores = _check_scores(get_criterion(criterion)(work, X, T, loss), work, name)
    return [s.detach().cpu().numpy() for s in scores]


def _flat_order(scores: list[torch.Tensor]) -> list[tuple[int, int, float]]:
    """Active (layer, unit, score), lowest score first; ties by lowest (layer, unit)."""
    flat = torch.cat(scores).detach().cpu().numpy()
    index = [(l, u) for l, s in enumerate(scores) for u in range(s.numel())]
    order = np.argsort(np.where(np.isnan(flat), np.inf, flat), kind="stable")
    return [(*index[i], float(flat[i])) for i in order if not np.isnan(flat[i])]


def prune(model, X, T, criterion="brute-force", schedule: str = "iterative", stop=None, loss: str = "sse", *,
          test=None, compensation: str = "none", inplace: bool = False, dtype=None, device=None,
          progress: bool = False) -> PruneResult:
    """Remove hidden neurons one at a time, lowest criterion score first.

    Parameters
    ----------
    model : MLP or nn.Sequential
        Neurons whose gate is already 0 count as removed. Not modified unless ``inplace``.
    X, T : evaluation data (the paper uses the training set).
    criterion : str or callable
        "brute-force", "taylor1", "taylor2", "taylor2-exact", ... or a registered / custom criterion.
    schedule : {"iterative", "single"}
        "iterative" re-scores the remaining neurons after every removal (Algorithm 2);
        "single" ranks them once and removes in that order (Algorithm 1).
    stop : Stop, dict or int, optional
        Stopping criteria; by default every hidden neuron is removed.
    loss : {"sse", "cross-entropy"}
    test : (X_test, T_test), optional
        Also record error and accuracy on this set after each removal.
    compensation : {"none", "mean", "lstsq"}
        "none" is the paper's pure removal. "mean" folds the removed neuron's mean output into the
        next layer's bias; "lstsq" refits the next layer's weights on the remaining neurons (both on
        the evaluation data X, no retraining). The criteria then score candidates with it on, and
        the result's ``.model`` holds the compensated weights.
    inplace : bool
        Write the final gates (and, with compensation, the weights) into ``model`` (an MLP).
    dtype, device : torch dtype and device to compute in (default: the model's).
    progress : bool
        Show a progress bar.

    Returns
    -------
    PruneResult
    """
    schedule = check_choice(schedule, SCHEDULES, "schedule")
    stop = Stop.coerce(stop)
    if inplace and not isinstance(model, MLP):
        raise ShrinkNetError(f"inplace=True: expected a shrinknet.MLP, got {type(model).__name__}")
    mode = comp.check_mode(compensation)
    src, work, X, T = prepare(model, X, T, loss, dtype, device)
    work.compensation = mode
    crit, name = get_criterion(criterion), criterion_name(criterion)
    classes = has_classes(T)
    if stop.max_accuracy_drop is not None and not classes:
        raise ShrinkNetError("stop.max_accuracy_drop: needs class targets (one-hot rows or 0/1), got other targets")
    if test is not None:
        Xt = check_inputs(test[0], work.sizes[0], X.dtype, X.device)
        Tt = check_targets(test[1], Xt.shape[0], work.sizes[-1], X.dtype, X.device)

    t0 = time.perf_counter()
    E0, acc0 = measure(work, X, T, loss, classes)
    res = PruneResult(criterion=name, schedule=schedule, loss=loss, hidden_sizes=work.hidden_sizes,
                      initial_error=E0, initial_accuracy=acc0, accuracies=[] if classes else None,
                      initially_active=work.n_active(), compensation=mode)
    if test is not None:
        res.initial_test_error, res.initial_test_accuracy = measure(work, Xt, Tt, loss, classes)
        res.test_errors, res.test_accuracies = [], [] if classes else None
    limit = stop.limit(work.n_active())
    res.stop_reason = "every hidden neuron removed" if limit == work.n_active() else "neuron count reached"

    order = None
    with tqdm(total=limit, desc=f"{name} ({schedule})", disable=not progress, leave=False) as bar:
        while res.n_removed < limit:
            if order is None or schedule == "iterative":
                order = _flat_order(_check_scores(crit(work, X, T, loss), work, name))
                pos = 0
            l, u, pred = order[pos]
            pos += 1
            old = float(work.gates[l][u])
            nxt = work.layers[l + 1]
            saved = (nxt.weight.detach().clone(), nxt.bias.detach().clone()) if mode != "none" else None
            comp.remove(work, work.cache(X), l, u, mode)
            E, acc = measure(work, X, T, loss, classes)
            reason = violation(stop, E0, acc0, E, acc)
            if reason:
                if saved is not None:
                    with torch.no_grad():
                        nxt.weight.copy_(saved[0]), nxt.bias.copy_(saved[1])
                work.set_gate(l, u, old)
                res.stop_reason = reason
                break
            res.removed.append((l, u))
            res.errors.append(E)
            res.predicted.append(pred)
            if classes:
                res.accuracies.append(acc)
            if test is not None:
                Et, acct = measure(work, Xt, Tt, loss, classes)
                res.test_errors.append(Et)
                if classes:
                    res.test_accuracies.append(acct)
            bar.update(1)
    res.gates = [g.detach().cpu().numpy().copy() for g in work.gates]
    res.model = work.clone(dtype=src.layers[0].weight.dtype, device="cpu")
    res.seconds = time.perf_counter() - t0
    if inplace:
        src.load_state_dict(res.model.state_dict())
    return res


def violation(stop: Stop, E0: float, acc0, E: float, acc) -> str:
    """Why (E, acc) breaks the accuracy / error limits of `stop` measured from (E0, acc0); '' if not."""
    if stop.max_accuracy_drop is not None and acc0 - acc > stop.max_accuracy_drop + 1e-12:
        return f"accuracy would drop by more than {stop.max_accuracy_drop}"
    if stop.max_error_increase is not None and E > E0 * (1 + stop.max_error_increase) + 1e-12:
        return f"error would rise by more than {stop.max_error_increase:.0%}"
    return ""
