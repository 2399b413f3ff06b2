"""The pruning loop: single overall ranking or iterative re-ranking, with stopping criteria.

The loop is handed a ranking strategy (a :class:`~shrinknet.criteria.Criterion`) and a pruning
context (:class:`~shrinknet.context.PruningContext`); it knows nothing of how a criterion scores.
It ranks the scores (or takes the criterion's cheaper top choice where one is offered), switches the
chosen unit off through the context and measures the error and accuracy that result.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import _progress
from . import distributed as dist
from . import inputs as batch
from . import uniform as _uniform
from .budgets import Kept, check_cost
from .checkpoint import Checkpoint, data_digest, digest
from ._validation import ShrinkNetError, check_choice, check_fraction, unwrap_compiled
from .context import PruningContext
from .criteria import check_scores, get_criterion, mark_removed, ranked
from .gating import Gated, GatedModel, restore_training, training_flags
from .results import PruneResult

SCHEDULES = ("single", "iterative")

@dataclass
class Stop:
    """When to stop removing units; any criterion that is met stops the loop.

    Parameters
    ----------
    n_units : int, optional
        Remove at most this many units (neurons, channels, heads: every removal counts one).
    fraction : float, optional
        Remove at most this fraction (0..1) of the units active at the start.
    max_accuracy_drop : float, optional
        Never let evaluation accuracy fall more than this (absolute, 0..1) below its
        starting value; the removal that would do so is not made.
    max_error_increase : float, optional
        Never let the evaluation error exceed (1 + this) times its starting value
        (0.1 = +10%); the removal that would do so is not made.

    n_neurons : int, optional
        The older name of ``n_units`` (it always counted heads and channels too); kept equal to it.
    params : float, optional
        A budget: stop at the first removal after which at most this fraction (0..1) of the whole
        model's parameters is kept, counted as the model :func:`shrinknet.shrink` makes will have
        them (see :mod:`shrinknet.budgets`).
    flops : float, optional
        The same in FLOPs per sample, at the shape of one calibration input.

    With no criterion at all, every unit is removed. A budget that removing every unit cannot reach
    is refused before any work, naming the lowest reachable.
    """
    n_units: int | None = None
    fraction: float | None = None
    max_accuracy_drop: float | None = None
    max_error_increase: float | None = None
    n_neurons: int | None = None
    params: float | None = None
    flops: float | None = None

    def __post_init__(self):
        name = "n_units"
        if self.n_neurons is not None:
            if self.n_units is not None and self.n_units != self.n_neurons:
                raise ShrinkNetError(f"stop: n_neurons is the older name of n_units; expected one of them (or equal "
                                     f"values), got n_units={self.n_units!r} and n_neurons={self.n_neurons!r}")
            name = "n_neurons"
            self.n_units = self.n_neurons
        n = self.n_units
        if n is not None and (isinstance(n, (bool, str, bytes)) or not isinstance(n, (int, float, np.number))
                              or not np.isfinite(n) or int(n) != n or n < 0):
            raise ShrinkNetError(f"stop.{name}: expected a non-negative integer, got {n!r}")
        self.n_units = self.n_neurons = None if n is None else int(n)       # (a NumPy integer is not JSON)
        self.fraction = check_fraction(self.fraction, "stop.fraction")
        self.max_accuracy_drop = check_fraction(self.max_accuracy_drop, "stop.max_accuracy_drop")
        self.max_error_increase = check_fraction(self.max_error_increase, "stop.max_error_increase", 0.0, math.inf)
        self.params = check_fraction(self.params, "stop.params")
        self.flops = check_fraction(self.flops, "stop.flops")

    @property
    def budget(self) -> bool:
        """Whether a budget in parameters or FLOPs is set."""
        return self.params is not None or self.flops is not None

    def limit(self, n_active: int) -> int:
        """Most units that may be removed, from the count-type criteria."""
        lim = n_active
        if self.n_units is not None:
            lim = min(lim, int(self.n_units))
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
            return cls(n_units=int(stop))
        raise ShrinkNetError(f"stop: expected shrinknet.Stop, a dict of its fields or an int, got {stop!r}")


def _same_stop(recorded, stop: Stop) -> bool:
    """Whether a checkpoint's recorded stop (a dict, perhaps of an older Stop's fields) is ``stop``."""
    try:
        return isinstance(recorded, dict) and Stop.coerce(recorded) == stop
    except ShrinkNetError:
        return False


def score(model, X, T, criterion: str = "taylor2", loss: str | None = None, *, units=None, output_activation=None,
          dtype=None, device=None, progress: bool | None = None) -> list[np.ndarray]:
    """Each hidden unit's estimated change in error when it is switched off.

    Parameters
    ----------
    model : MLP, nn.Sequential, GatedModel or any nn.Module (see ``units``)
    X : (N, n_in) array, or as the model takes it (a tensor, a tuple or a dict of tensors), or a
        DataLoader of (X, T) batches with T=None;  T : targets shaped like the output (or integer
        labels, or (N,) for one output)
    criterion : str or callable, a name from :func:`shrinknet.available_criteria`
    loss : {"sse", "cross-entropy"}, optional
        Default: cross-entropy for integer class labels, else SSE (the paper's).
    units : list of module names, module types (nn.Linear, nn.Conv2d), "ffn" and "heads", optional
        For models other than the MLP class: which units (see :func:`shrinknet.finding.find_units`).
        Default: in a transformer, every block's FFN neurons; in other models every Linear / Conv2d
        but the output layer. "heads": every supported attention module's heads; an attention
        module's name: its heads.
    output_activation : {"identity", "sigmoid", "softmax"}, optional
        For other models: what the loss applies to the model's output (default identity = logits).
    progress : bool or None
        A progress bar of the candidates the oracle has scored, advanced after each group (and of
        the batches of a loader): None (default) shows it once the call has run 2 s, True from the
        start, False never.

    Returns
    -------
    list of (K_l,) NumPy arrays, one per hidden layer / unit group; NaN for units already removed.
    """
    progress = _progress.check(progress)
    ctx = PruningContext.start(model, X, T, loss, units=units, output_activation=output_activation, dtype=dtype,
                               device=device)
    crit = get_criterion(criterion)
    n = ctx.model.n_active()
    with torch.inference_mode(False), _progress.bar(total=n, desc=f"{crit.name} scores", progress=progress,
                                                    unit="unit") as bar:
        ctx.on_candidates = bar.update
        _show_batches(ctx, bar, progress)
        scores = check_scores(crit.scores(ctx), ctx.model, crit.name)
        bar.update(max(0, n - bar.n))              # criteria that call no oracle end here
    return [s.detach().cpu().numpy() for s in scores]


def _show_batches(ctx, bar, progress) -> None:
    """A long pass over a loader shows which batch it is at, beside the bar's count."""
    if ctx.streaming and progress is not False:
        of = f"/{ctx.X.n_batches}" if ctx.X.n_batches else ""
        ctx.X.on_batch = lambda k: bar.set_postfix_str(f"batch {k + 1}{of}")


def prune(model, X, T, criterion="brute-force", schedule: str = "iterative", stop=None, loss: str | None = None, *,
          test=None, compensation: str = "none", inplace: bool = False, units=None, output_activation=None,
          dtype=None, device=None, progress: bool | None = None, checkpoint=None, uniform: bool = False,
          cost: str | None = None) -> PruneResult:
    """Remove hidden units one at a time, lowest criterion score first.

    Parameters
    ----------
    model : MLP, nn.Sequential, GatedModel or any nn.Module
        Units whose gate is already 0 count as removed. Not modified unless ``inplace``. Models
        other than the MLP class are pruned through gates on their Linear / Conv2d units (see
        ``units``), on a copy in eval mode.
    X, T : evaluation data (the paper uses the training set): X as the model takes it (a tensor, a
        tuple or a dict of tensors), T shaped like its output or integer labels; or X a DataLoader
        of (X, T) batches and T=None. Under torch.distributed, each rank's own shard.
    criterion : str or callable
        "brute-force", "taylor1", "taylor2", "taylor2-exact", ... or a registered / custom criterion.
    schedule : {"iterative", "single"}
        "iterative" re-scores the remaining units after every removal (Algorithm 2);
        "single" ranks them once and removes in that order (Algorithm 1).
    stop : Stop, dict or int, optional
        Stopping criteria; by default every hidden unit is removed. ``Stop(params=0.5)`` /
        ``Stop(flops=0.5)``: a budget, the fraction of the whole model's parameters / FLOPs kept.
    loss : {"sse", "cross-entropy"}, optional
        Default: cross-entropy for integer class labels, else SSE (the paper's).
    test : (X_test, T_test), optional
        Also record error and accuracy on this set after each removal.
    compensation : {"none", "mean", "lstsq"}
        "none" is the paper's pure removal. "mean" folds the removed neuron's mean output into the
        next layer's bias; "lstsq" refits the next layer's weights on the remaining neurons (both on
        the evaluation data X, no retraining). The criteria then score candidates with it on, and
        the result's ``.model`` holds the compensated weights (shrink it with
        ``shrink(result.model, result)``). The MLP class, and transformer units (FFN neurons,
        heads) whose consumer layer has a bias.
    inplace : bool
        Write the final gates (and, with compensation, the weights) into ``model`` (an MLP or GatedModel).
    units : list of module names, module types (nn.Linear, nn.Conv2d), "ffn" and "heads", optional
        For models other than the MLP class: which units (see :func:`shrinknet.finding.find_units`).
        Default: in a transformer, every block's FFN neurons; in other models every Linear / Conv2d
        but the output layer. "heads": every supported attention module's heads; an attention
        module's name: its heads.
    output_activation : {"identity", "sigmoid", "softmax"}, optional
        For other models: what the loss applies to the model's output (default identity = logits).
    dtype, device : torch dtype and device to compute in (default: the model's; float32 for a bfloat16 /
        float16 model, whose ``result.model`` is in its own dtype again).
    progress : bool or None
        A progress bar of the removals (on standard error): None (default) shows it once the run has
        taken 2 s, True from the start, False never.
    checkpoint : str or Path, optional
        A folder where each step is written (and fsync'ed) as it ends. Called again with the same
        folder, model, data and options, the run replays the recorded steps and goes on from the
        last one, ending with the same result as a run never interrupted (``resumed_steps`` says
        how many were replayed); a changed model, data set, criterion or option is refused. The
        stopping options may differ: a later stop extends a finished run. See
        :mod:`shrinknet.checkpoint`.
    uniform : bool
        Keep the same number of units in every group of one kind and size (every block's FFN neurons,
        every attention module's heads or key/value groups): removals go in rounds of one unit per
        group, each group's lowest-ranked, the round's kind that of the lowest-ranked unit of all (see
        :mod:`shrinknet.uniform`). A Hugging Face model so pruned reloads from its config alone
        (:func:`shrinknet.save_pretrained`). Heads of BERT- / GPT-2-style attention are refused. A
        budget (``stop.params`` / ``stop.flops``) is checked after each whole round; with ``cost``
        the round's kind is that of the first unit in the cost-aware order.
    cost : {None, "params", "flops"}
        None (default): lowest score first. "params" / "flops": cost-aware choice (the knapsack view
        of Kwon et al. 2022): units whose score is <= 0 (their removal does not raise the error) go
        first, lowest first; then the others by score divided by the parameters / FLOPs per sample
        their removal saves now, so that units of different kinds (a head, an FFN neuron) compete on
        one scale. With any criterion, the exact oracle's fast step included; with the "single"
        schedule the scores are the first ranking's and the savings the current ones.

    Returns
    -------
    PruneResult
        With a budget or a cost, also the parameters and FLOPs kept after each removal.
    """
    schedule = check_choice(schedule, SCHEDULES, "schedule")
    stop = Stop.coerce(stop)
    cost = check_cost(cost)
    progress = _progress.check(progress)
    ckpt = None if checkpoint is None else Checkpoint(checkpoint)
    if ckpt is not None and dist.world_size() > 1:
        raise ShrinkNetError("checkpoint: not supported under torch.distributed yet; expected checkpoint=None")
    if not isinstance(uniform, bool):
        raise ShrinkNetError(f"uniform: expected True or False, got {uniform!r}")
    if inplace and not isinstance(model, Gated):
        raise ShrinkNetError(f"inplace=True: expected a shrinknet.MLP or GatedModel, got {type(model).__name__}")
    ctx = PruningContext.start(model, X, T, loss, units=units, output_activation=output_activation, dtype=dtype,
                               device=device, compensation=compensation)
    crit = get_criterion(criterion)
    rounds = _uniform.check(ctx.model) if uniform else None
    kept = None
    if stop.budget or cost is not None:         # counted before any work: a budget out of reach is refused
        with torch.inference_mode(False):
            kept = Kept(ctx.model)
        kept.check_reachable(stop)
    classes = ctx.classes()
    if stop.max_accuracy_drop is not None and not classes:
        raise ShrinkNetError("stop.max_accuracy_drop: needs class targets (one-hot rows or 0/1), got other targets")
    test_data = None
    if test is not None:
        if not (isinstance(test, (tuple, list)) and len(test) == 2):
            raise ShrinkNetError(f"test: expected (X_test, T_test), or (a DataLoader of (X, T) batches, None), got "
                                 f"{type(test).__name__}")
        Xt = ctx.inputs(test[0], "test X", "test T")
        if isinstance(Xt, batch.Stream):
            if test[1] is not None:
                raise ShrinkNetError("test: expected (a DataLoader, None): its batches carry the targets, got a T too")
            test_data = (Xt, None)
        else:
            test_data = (Xt, ctx.targets(test[1], batch.rows(Xt)))
    fingerprint = None
    if ckpt is not None:
        work = ctx.model
        # (dtype and device first: a changed dtype also changes the model's digest, and is the one to name)
        fingerprint = {"dtype": str(work.gates[0].dtype), "device": work.gates[0].device.type,
                       "model": digest(work.state_tensors()), "data": data_digest(ctx.X, ctx.T),
                       "test": None if test_data is None else data_digest(*test_data), "criterion": crit.name,
                       "schedule": schedule, "loss": ctx.loss, "compensation": ctx.compensation,
                       "units": list(work.unit_names), "output_activation": work.output_activation,
                       "cost": cost}        # (an older run's fingerprint has none: cost=None resumes it)
        # (None, not False, where not uniform: a folder written before the option existed still resumes)
        fingerprint["uniform"] = True if uniform else None
    try:
        with torch.inference_mode(False):
            res = _run(ctx, crit, schedule, stop, classes, test_data, progress, ckpt, fingerprint, rounds, kept, cost)
    finally:
        if ckpt is not None:
            ckpt.close()
    p = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    res.model = ctx.model.clone(dtype=p.dtype if p is not None else None, device="cpu")
    if isinstance(model, torch.nn.Module):          # each submodule in the mode the user's model has it
        if isinstance(res.model, GatedModel):
            own = model.model if isinstance(model, GatedModel) else unwrap_compiled(model)
            restore_training(res.model.model, training_flags(own))
            res.model.training = model.training
        else:
            res.model.train(model.training)
    if inplace:
        model.load_state_dict(res.model.state_dict())
    return res


def _run(ctx: PruningContext, crit, schedule: str, stop: Stop, classes: bool, test, progress, ckpt=None,
         fingerprint=None, rounds=None, kept: Kept | None = None, cost: str | None = None) -> PruneResult:
    """The elimination loop: rank, remove the first, measure, until a stop is met (after replaying the
    steps a checkpoint holds). ``rounds``: uniform pruning's classes of groups (:mod:`shrinknet.uniform`);
    ``kept``: the parameters and FLOPs counted removal by removal, where a budget or ``cost`` needs them."""
    work, t0 = ctx.model, time.perf_counter()
    res = _start(ctx, crit, schedule, classes, test, kept, cost)
    records = [] if ckpt is None else ckpt.open({**fingerprint, "initial_error": res.initial_error,
                                                 "initial_accuracy": res.initial_accuracy,
                                                 "initial_test_error": res.initial_test_error})
    limit = stop.limit(work.n_active())
    res.stop_reason = "every hidden neuron removed" if limit == work.n_active() else "neuron count reached"
    order, pos, first = None, 0, None
    best = crit.best if schedule == "iterative" and rounds is None else None
    with _progress.bar(total=limit, desc=f"{crit.name} ({schedule})", progress=progress, unit="unit") as bar:
        _show_batches(ctx, bar, progress)
        met, done = _budget_met(res, kept, stop), False
        if records and not met:
            if schedule == "single":        # the one ranking is of the model before any removal
                first = check_scores(crit.scores(ctx), work, crit.name)
                order = ranked(first)
            if rounds is not None:                  # whole rounds only
                records = _uniform.whole_rounds(records, rounds, limit, lambda s: violation(
                    stop, res.initial_error, res.initial_accuracy, s["error"], s.get("accuracy")), ckpt.folder)
            done = _replay(ctx, res, records, stop, limit, ckpt, kept)
            pos = res.resumed_steps = res.n_removed
            bar.update(res.n_removed)
        while not (done or met) and res.n_removed < limit:
            # (ctx.costs: what a unit of each group saves now, for a criterion's own best() too)
            ctx.costs = kept.costs(cost) if cost is not None else None
            if rounds is not None:
                if limit - res.n_removed < min(len(c) for c in rounds):
                    break                           # no whole round fits: nothing to score
                if cost is not None:                # (as below: the single schedule keeps its first scores)
                    if first is None or schedule == "iterative":
                        first = check_scores(crit.scores(ctx), work, crit.name)
                    order = ranked(mark_removed(work, first), ctx.costs)
                elif order is None or schedule == "iterative":
                    order = ranked(check_scores(crit.scores(ctx), work, crit.name))
                picks = _uniform.next_round(order, work.gates, rounds)
                fits = 0 < len(picks) <= limit - res.n_removed
                steps = _round(ctx, res, picks, stop, classes, test) if fits else None
                for step in steps or []:
                    if ckpt is not None:
                        ckpt.append(step)
                    _record(res, step, kept)
                    bar.update(1)
                if steps is None or _budget_met(res, kept, stop):    # (a budget: checked on whole rounds)
                    break
                continue
            pick = best(ctx) if best is not None else None
            if pick is None and cost is not None:
                if first is None or schedule == "iterative":
                    first = check_scores(crit.scores(ctx), work, crit.name)
                # the single schedule keeps its first scores; the savings change as units go
                pick = ranked(mark_removed(work, first), ctx.costs)[0]
            elif pick is None:
                if order is None or schedule == "iterative":
                    order, pos = ranked(check_scores(crit.scores(ctx), work, crit.name)), 0
                pick = order[pos]
                pos += 1
            step = _step(ctx, res, pick, stop, classes, test)
            if step is None:
                break
            if ckpt is not None:
                ckpt.append(step)
            _record(res, step, kept)
            bar.update(1)
            if _budget_met(res, kept, stop):
                break
        if ckpt is not None and not done:
            ckpt.append({"end": res.stop_reason, "stop": asdict(stop)})
    res.gates = [g.detach().cpu().numpy().copy() for g in work.gates]
    res.seconds = time.perf_counter() - t0
    return res


def _start(ctx: PruningContext, crit, schedule: str, classes: bool, test, kept: Kept | None = None,
           cost: str | None = None) -> PruneResult:
    """A result holding the model's state before any removal: its error and accuracy (and the test set's,
    and where ``kept`` counts them, the parameters and FLOPs)."""
    work = ctx.model
    E0, acc0 = ctx.measure(classes=classes)
    res = PruneResult(criterion=crit.name, schedule=schedule, loss=ctx.loss, hidden_sizes=work.hidden_sizes,
                      initial_error=E0, initial_accuracy=acc0, accuracies=[] if classes else None,
                      initially_active=work.n_active(), compensation=ctx.compensation, unit_names=work.unit_names,
                      input_shape=None if work.input_shape is None else list(work.input_shape),
                      # (a GatedModel's output activation is an option of the run; the MLP's is its own)
                      output_activation=work.output_activation if isinstance(work, GatedModel) else None)
    if test is not None:
        res.initial_test_error, res.initial_test_accuracy = ctx.measure(*test, classes=classes)
        res.test_errors, res.test_accuracies = [], [] if classes else None
    if kept is not None:
        res.cost = cost
        res.params_total, res.flops_total = (int(v) for v in kept.total)
        res.initial_params_kept, res.initial_flops_kept = (int(v) for v in kept.kept)
        res.params_kept, res.flops_kept = [], []
    return res


def _step(ctx: PruningContext, res: PruneResult, pick, stop: Stop, classes: bool, test) -> dict | None:
    """Remove the picked unit and measure; the step as a dict, or None (the removal undone and
    ``res.stop_reason`` set) where it breaks the stop's accuracy / error limit: a round of one."""
    steps = _round(ctx, res, [pick], stop, classes, test)
    return None if steps is None else steps[0]


def _round(ctx: PruningContext, res: PruneResult, picks, stop: Stop, classes: bool, test) -> list | None:
    """A uniform round: remove the picks one by one, measuring after each; the steps, or None (all of the
    round undone and ``res.stop_reason`` set) where any of them breaks the stop's limits."""
    undo, steps = [], []
    for l, u, pred in picks:
        undo.append(ctx.remove(l, u))
        E, acc = ctx.measure(classes=classes)
        reason = violation(stop, res.initial_error, res.initial_accuracy, E, acc)
        if reason:
            for f in reversed(undo):
                f()
            res.stop_reason = reason
            return None
        step = {"layer": int(l), "unit": int(u), "predicted": float(pred), "error": E, "accuracy": acc}
        if test is not None:
            step["test_error"], step["test_accuracy"] = ctx.measure(*test, classes=classes)
        steps.append(step)
    return steps


def _record(res: PruneResult, step: dict, kept: Kept | None = None) -> None:
    """Add one removal (a step dict as the checkpoint holds it) to the result (and count it in ``kept``)."""
    res.removed.append((step["layer"], step["unit"]))
    if kept is not None:
        kept.remove(step["layer"])
        res.params_kept.append(int(kept.kept[0]))
        res.flops_kept.append(int(kept.kept[1]))
    res.errors.append(step["error"])
    res.predicted.append(step["predicted"])
    if res.accuracies is not None:
        res.accuracies.append(step["accuracy"])
    if res.test_errors is not None:
        res.test_errors.append(step["test_error"])
        if res.test_accuracies is not None:
            res.test_accuracies.append(step["test_accuracy"])


def _replay(ctx: PruningContext, res: PruneResult, records: list, stop: Stop, limit: int, ckpt,
            kept: Kept | None = None) -> bool:
    """Make the recorded removals again (no scoring, one forward pass each) and add them to ``res``, up to
    what ``stop`` allows; True where the run needs no further step (it had ended with this very stop,
    or ``stop`` ends it within the recorded steps)."""
    steps = [r for r in records if "unit" in r]
    gates = ctx.model.gates
    for k, step in enumerate(steps):
        if res.n_removed >= limit:
            return True
        l, u = step.get("layer"), step.get("unit")
        if not (isinstance(l, int) and 0 <= l < len(gates) and isinstance(u, int) and 0 <= u < gates[l].numel()
                and float(gates[l][u]) != 0.0):
            raise ShrinkNetError(f"checkpoint {ckpt.folder}: step {k + 1} removes unit {(l, u)!r}, which this model "
                                 f"does not have active; expected the steps of an earlier prune of this model")
        reason = violation(stop, res.initial_error, res.initial_accuracy, step["error"], step.get("accuracy"))
        if reason:                          # where a run with this stop would have stopped
            res.stop_reason = reason
            return True
        ctx.remove(l, u)
        _record(res, step, kept)
        if _budget_met(res, kept, stop):
            return True
    end = records[-1] if records and "end" in records[-1] else None
    if end is not None and _same_stop(end.get("stop"), stop):
        res.stop_reason = end["end"]
        return True
    return False


def _budget_met(res: PruneResult, kept: Kept | None, stop: Stop) -> bool:
    """Whether ``stop``'s parameter / FLOP budget is met by what ``kept`` counts (then ``res.stop_reason``
    says so)."""
    reason = kept.reached(stop) if kept is not None else ""
    if reason:
        res.stop_reason = reason
    return bool(reason)


def violation(stop: Stop, E0: float, acc0, E: float, acc) -> str:
    """Why (E, acc) breaks the accuracy / error limits of `stop` measured from (E0, acc0); '' if not."""
    if stop.max_accuracy_drop is not None and acc0 - acc > stop.max_accuracy_drop + 1e-12:
        return f"accuracy would drop by more than {stop.max_accuracy_drop}"
    if stop.max_error_increase is not None and E > E0 * (1 + stop.max_error_increase) + 1e-12:
        return f"error would rise by more than {stop.max_error_increase:.0%}"
    return ""
