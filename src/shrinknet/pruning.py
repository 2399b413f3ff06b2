"""The pruning loop: single overall ranking or iterative re-ranking, with stopping criteria.

The loop knows nothing about criteria beyond their common signature (see
:mod:`shrinknet.criteria`); it only ranks the scores they return, switches the chosen
neuron's gate to 0 and measures the error and accuracy that result.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import compensation as comp
from . import losses
from ._validation import (ShrinkNetError, as_tensor, check_choice, check_fraction, check_inputs, check_targets,
                          non_finite_score)
from .criteria import criterion_name, get_criterion
from .metrics import has_classes, measure
from .gating import GatedModel
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


def is_generic(model, units=None) -> bool:
    """True where the model goes through :class:`GatedModel` (any nn.Module) rather than the MLP class."""
    if isinstance(model, MLP):
        if units is not None:
            raise ShrinkNetError("units: an MLP's units are all its hidden neurons; expected units=None, "
                                 f"got {units!r}")
        return False
    if isinstance(model, GatedModel) or units is not None:
        return True
    if isinstance(model, nn.Sequential):
        try:
            MLP.from_sequential(model)
            return False
        except ShrinkNetError:
            return True
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected shrinknet.MLP or a torch nn.Module, got {type(model).__name__}")
    return True


def prepare(model, X, T, loss: str, dtype=None, device=None, units=None, output_activation=None):
    """Validate inputs and return (source model, working copy with gates, X, T), tensors on one device.

    The working copy is an :class:`MLP` for MLPs (and nn.Sequential MLPs without ``units``), a
    :class:`GatedModel` in eval mode for any other model."""
    loss = losses.check_loss(loss)
    if not is_generic(model, units):
        if output_activation is not None:
            raise ShrinkNetError("output_activation: an MLP has its own; expected None, got "
                                 f"{output_activation!r}")
        src = as_mlp(model)
        src.check_finite()
        dtype = dtype or src.layers[0].weight.dtype
        work = src.clone(dtype=dtype, device=device)
        X = check_inputs(X, work.sizes[0], dtype, device)
        T = check_targets(T, X.shape[0], work.sizes[-1], dtype, device)
        return src, work, X, T
    p = next(iter(model.parameters()), None)
    dtype = dtype or (p.dtype if p is not None else torch.float32)
    device = device or (p.device if p is not None else None)
    X = as_tensor(X, "X", dtype, device)
    if X.ndim < 2:
        raise ShrinkNetError(f"X: expected a batch of samples (N, ...), got shape {tuple(X.shape)}")
    if isinstance(model, GatedModel):
        if units is not None or output_activation is not None:
            raise ShrinkNetError("units / output_activation: a GatedModel has its own; expected None")
        work = model.clone(dtype=dtype, device=device)
        work.model.eval()
        X = _inputs(work, X, dtype, device)
    else:
        work = GatedModel(_copy_to(model, dtype, device), units, X[:1], output_activation or "identity", copy=False)
    work.check_finite()
    out = work.logits(X[:1])
    if out.ndim != 2:
        raise ShrinkNetError(f"model: expected outputs of shape (N, n_out), got {tuple(out.shape)}")
    T = check_targets(T, X.shape[0], out.shape[1], dtype, device)
    return model, work, X, T


def _copy_to(model, dtype, device):
    return copy.deepcopy(model).to(dtype=dtype, device=device)


def _inputs(work, X, dtype, device, name="X"):
    """X checked against the working model's input shape."""
    if isinstance(work, MLP):
        return check_inputs(X, work.sizes[0], dtype, device)
    X = as_tensor(X, name, dtype, device)
    if tuple(X.shape[1:]) != work.input_shape:
        raise ShrinkNetError(f"{name}: expected samples of shape {work.input_shape}, got {tuple(X.shape[1:])}")
    return X


def _n_out(work, X) -> int:
    return work.sizes[-1] if isinstance(work, MLP) else int(work.logits(X[:1]).shape[1])


def _check_scores(scores, model, name: str) -> list[torch.Tensor]:
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
            raise non_finite_score(name, l, int(bad[0]))
        out.append(torch.where(g != 0, s, torch.full_like(s, float("nan"))))
    return out


def score(model, X, T, criterion: str = "taylor2", loss: str = "sse", *, units=None, output_activation=None,
          dtype=None, device=None) -> list[np.ndarray]:
    """Each hidden neuron's estimated change in error when it is switched off.

    Parameters
    ----------
    model : MLP, nn.Sequential or any nn.Module (see ``units``)
    X : (N, n_in) array, or (N, ...) as the model takes it;  T : (N, n_out) array (or integer labels,
        or (N,) for one output)
    criterion : str or callable, a name from :func:`shrinknet.available_criteria`
    loss : {"sse", "cross-entropy"}
    units : list of module names and/or types (nn.Linear, nn.Conv2d), optional
        For models other than the MLP class: whose outputs are the units (see
        :class:`shrinknet.gating.GatedModel`); default every Linear / Conv2d but the output layer.
    output_activation : {"identity", "sigmoid", "softmax"}, optional
        For other models: what the loss applies to the model's output (default identity = logits).

    Returns
    -------
    list of (K_l,) NumPy arrays, one per hidden layer / unit group; NaN for neurons already removed.
    """
    _, work, X, T = prepare(model, X, T, loss, dtype, device, units, output_activation)
    name = criterion_name(criterion)
    scores = _check_scores(get_criterion(criterion, work)(work, X, T, loss), work, name)
    return [s.detach().cpu().numpy() for s in scores]


def _flat_order(scores: list[torch.Tensor]) -> list[tuple[int, int, float]]:
    """Active (layer, unit, score), lowest score first; ties by lowest (layer, unit)."""
    flat = torch.cat(scores).detach().cpu().numpy()
    index = [(l, u) for l, s in enumerate(scores) for u in range(s.numel())]
    order = np.argsort(np.where(np.isnan(flat), np.inf, flat), kind="stable")
    return [(*index[i], float(flat[i])) for i in order if not np.isnan(flat[i])]


def prune(model, X, T, criterion="brute-force", schedule: str = "iterative", stop=None, loss: str = "sse", *,
          test=None, compensation: str = "none", inplace: bool = False, units=None, output_activation=None,
          dtype=None, device=None, progress: bool = False) -> PruneResult:
    """Remove hidden neurons one at a time, lowest criterion score first.

    Parameters
    ----------
    model : MLP, nn.Sequential or any nn.Module
        Neurons whose gate is already 0 count as removed. Not modified unless ``inplace``. Models
        other than the MLP class are pruned through gates on their Linear / Conv2d units (see
        ``units``), on a copy in eval mode.
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
        the result's ``.model`` holds the compensated weights. MLP class only.
    inplace : bool
        Write the final gates (and, with compensation, the weights) into ``model`` (an MLP).
    units : list of module names and/or types, optional
        Which Linear / Conv2d modules' outputs are prunable, for other models (default: all but
        the output layer); see :class:`shrinknet.gating.GatedModel`.
    output_activation : {"identity", "sigmoid", "softmax"}, optional
        For other models: what the loss applies to the model's output (default identity = logits).
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
    src, work, X, T = prepare(model, X, T, loss, dtype, device, units, output_activation)
    generic = isinstance(work, GatedModel)
    if generic and mode != "none":
        raise ShrinkNetError(f"compensation {mode!r}: works on shrinknet.MLP only; expected 'none' for "
                             f"{type(model).__name__}")
    work.compensation = mode
    crit, name = get_criterion(criterion, work), criterion_name(criterion)
    classes = has_classes(T)
    if stop.max_accuracy_drop is not None and not classes:
        raise ShrinkNetError("stop.max_accuracy_drop: needs class targets (one-hot rows or 0/1), got other targets")
    if test is not None:
        Xt = _inputs(work, test[0], X.dtype, X.device, "test X")
        Tt = check_targets(test[1], Xt.shape[0], _n_out(work, X), X.dtype, X.device)

    t0 = time.perf_counter()
    E0, acc0 = measure(work, X, T, loss, classes)
    res = PruneResult(criterion=name, schedule=schedule, loss=loss, hidden_sizes=work.hidden_sizes,
                      initial_error=E0, initial_accuracy=acc0, accuracies=[] if classes else None,
                      initially_active=work.n_active(), compensation=mode,
                      unit_names=work.unit_names if generic else _mlp_unit_names(model, work),
                      input_shape=list(work.input_shape) if generic else [work.sizes[0]],
                      output_activation=work.output_activation if generic else None)
    if test is not None:
        res.initial_test_error, res.initial_test_accuracy = measure(work, Xt, Tt, loss, classes)
        res.test_errors, res.test_accuracies = [], [] if classes else None
    limit = stop.limit(work.n_active())
    res.stop_reason = "every hidden neuron removed" if limit == work.n_active() else "neuron count reached"

    order = None
    # a criterion may offer a cheaper way to its lowest score alone (all an iterative step uses)
    serial = getattr(crit, "serial", None) if schedule == "iterative" else None
    session = serial(work, X, T, loss) if serial is not None else None
    with tqdm(total=limit, desc=f"{name} ({schedule})", disable=not progress, leave=False) as bar:
        while res.n_removed < limit:
            pick = session.best() if session is not None else None
            if pick is None:
                if order is None or schedule == "iterative":
                    order = _flat_order(_check_scores(crit(work, X, T, loss), work, name))
                    pos = 0
                pick = order[pos]
                pos += 1
            l, u, pred = pick
            old = float(work.gates[l][u])
            nxt = work.layers[l + 1] if mode != "none" else None
            saved = (nxt.weight.detach().clone(), nxt.bias.detach().clone()) if mode != "none" else None
            comp.remove(work, work.cache(X) if mode != "none" else None, l, u, mode)
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
    res.model = work.clone(dtype=_dtype_of(src), device="cpu")
    res.seconds = time.perf_counter() - t0
    if inplace:
        src.load_state_dict(res.model.state_dict())
    return res


def _mlp_unit_names(model, work) -> list[str]:
    """Names of the modules producing the hidden units: "layers.l" in an MLP, the Linear layers'
    own names in an nn.Sequential that was read as one (so shrink() finds them there)."""
    if isinstance(model, nn.Sequential):
        return [n for n, m in model.named_children() if isinstance(m, nn.Linear)][:-1]
    return [f"layers.{l}" for l in range(work.n_hidden_layers)]


def _dtype_of(model):
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.float32


def violation(stop: Stop, E0: float, acc0, E: float, acc) -> str:
    """Why (E, acc) breaks the accuracy / error limits of `stop` measured from (E0, acc0); '' if not."""
    if stop.max_accuracy_drop is not None and acc0 - acc > stop.max_accuracy_drop + 1e-12:
        return f"accuracy would drop by more than {stop.max_accuracy_drop}"
    if stop.max_error_increase is not None and E > E0 * (1 + stop.max_error_increase) + 1e-12:
        return f"error would rise by more than {stop.max_error_increase:.0%}"
    return ""
