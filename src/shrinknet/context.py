"""The pruning context: everything one pruning run works with, passed explicitly to the criteria.

A :class:`PruningContext` holds the gated working copy of the user's model, the evaluation data,
the loss, the compensation mode, the cached forward passes and the criteria's state between
steps. The user's model is copied once, when the context is made (:func:`as_gated`, the one place
that looks at what kind of model it was given), and nothing is ever set on it.

    >>> ctx = PruningContext.start(model, X, T, "sse")
    >>> ctx.error()                      # E of the working copy as it is
    >>> ctx.remove(0, 3)                 # unit 3 of group 0 off (with the context's compensation)
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from . import _progress
from . import distributed as dist
from . import inputs as batch
from . import losses
from .activations import output_activation as check_output
from .derivatives import samples_per_pass
from ._validation import (HALF, ShrinkNetError, check_device, check_dtype, check_materialized, check_targets,
                          strip_compiled, unwrap_compiled, working_dtype)
from .evaluators import Evaluator, evaluator_for
from .gating import Gated, GatedModel
from .metrics import error_and_accuracy, has_classes, outputs
from .models import MLP
from .oracle import cache as caching

#: most forward passes a context keeps (evaluation data, test data, a criterion's subset)
KEEP_CACHES = 4


def as_gated(model, example_input=None, *, units=None, output_activation=None, dtype=None, device=None,
             name: str = "example_input") -> Gated:
    """A gated working copy of ``model`` (never ``model`` itself), in eval mode.

    An :class:`MLP` (or an ``nn.Sequential`` of Linear layers and one activation, read as one) gives
    an MLP; a :class:`GatedModel` a copy of it; any other ``nn.Module`` a :class:`GatedModel` with
    gates on ``units``, traced on ``example_input`` (a batch the model takes; ``name`` names it in
    errors). This is the one place that looks at what kind of model it was given.

    The copy computes in ``dtype``, by default the model's own, but float32 for a bfloat16 / float16
    model (inputs converted too); a ``torch.compile``'d model is copied from the module it wraps."""
    dtype, device = check_dtype(dtype), check_device(device)
    if isinstance(model, nn.Module):
        model = unwrap_compiled(model)
        check_materialized(model)
        dtype = working_dtype(model, dtype)
    if isinstance(model, Gated):
        own = isinstance(model, GatedModel)
        if units is not None and (not own or list(units) != model.unit_names):
            raise ShrinkNetError(f"units: a GatedModel has its own units; expected None, got {units!r}" if own else
                                 "units: an MLP's units are all its hidden neurons; expected units=None, "
                                 f"got {units!r}")
        if output_activation is not None and output_activation != model.output_activation:
            raise ShrinkNetError(f"output_activation: a {type(model).__name__} has its own; expected None, got "
                                 f"{output_activation!r}")
        return model.clone(dtype=dtype, device=device).eval()
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected shrinknet.MLP or a torch nn.Module, got {type(model).__name__}")
    mlp = _as_mlp(model, units, output_activation, dtype)
    if mlp is not None:
        return mlp.to(device) if device is not None else mlp
    if example_input is None:
        raise ShrinkNetError(f"{name}: expected a batch the model accepts (a tensor, or a tuple or dict of tensors; "
                             f"one sample is enough), got None")
    p = next(iter(model.parameters()), None)
    x = batch.check(example_input, name, dtype, device or (p.device if p is not None else None))
    if isinstance(x, torch.Tensor) and x.ndim < 2:
        raise ShrinkNetError(f"{name}: expected a batch of samples (N, ...), got shape {tuple(x.shape)}")
    work = strip_compiled(copy.deepcopy(model)).to(dtype=dtype, device=device)
    return GatedModel(work, units, batch.take(x, slice(0, 1)), output_activation or "identity", copy=False)


def default_loss(loss, T, n_out, output: str | None = None) -> str:
    """``loss``, or where it is None: cross-entropy for integer class labels, else SSE (the paper's).
    ``n_out``: the number of outputs or the shape of one sample's output. ``output``: the model's output
    activation, where known: one raw output (identity) given integer 0/1 labels is refused, since SSE on a
    logit is rarely what is meant."""
    if loss is not None:
        return losses.check_loss(loss)
    shape = (n_out,) if isinstance(n_out, (int, np.integer)) else tuple(n_out)
    raw = T if isinstance(T, (torch.Tensor, np.ndarray)) else np.asarray(T)
    integer = (not raw.dtype.is_floating_point and raw.dtype != torch.bool if isinstance(raw, torch.Tensor)
               else np.issubdtype(raw.dtype, np.integer))
    if output == "identity" and shape[-1] == 1 and (integer or raw.dtype in (torch.bool, np.bool_)) \
            and bool(((raw == 0) | (raw == 1)).all()):
        raise ShrinkNetError("T: integer 0/1 labels for a model with one raw output (a logit), and no loss; expected "
                             "output_activation='sigmoid', loss='cross-entropy' (binary cross-entropy on the logit), "
                             "or loss='sse' for the squared error of the raw output, got loss=None")
    labels = raw.ndim == len(shape) and shape[-1] > 1 and integer
    return "cross-entropy" if labels else "sse"


def _plain(t):
    # tensors made under torch.inference_mode() have no version counter, which the caches read
    return batch.plain(t)


class PruningContext:
    """The working state of one pruning run.

    Parameters
    ----------
    model : Gated
        The working copy (see :func:`as_gated`); the context changes its gates and, with
        compensation, its weights.
    X : the inputs as the model takes them (a tensor, or a tuple or dict of tensors, see
        :mod:`shrinknet.inputs`), float tensors in the model's dtype, all on its device
    T : tensor of the model's output shape, (N, n_out) or (N, ..., n_out)
    loss : {"sse", "cross-entropy"}
    compensation : {"none", "mean", "lstsq"}
    evaluator : Evaluator, optional
        How the run evaluates its model (:mod:`shrinknet.evaluators`); by default the one for the
        model's kind, chosen here, once.

    Attributes
    ----------
    evaluator : Evaluator
        The run's evaluator, which also keeps the oracle's and compensation's state for the run.
    state : dict
        Where criteria keep what they carry from step to step of one run (e.g. an approximate
        criterion's subset), under keys of their own.
    on_candidates : callable or None
        Called with the number of candidates the oracle has just scored (a progress bar's
        ``update``); None: nothing is reported.
    costs : list of float or None
        In a cost-aware prune, what removing one more unit of each group saves now (parameters or
        FLOPs): a criterion's ``best`` then picks by the cost-aware rule (:func:`shrinknet.criteria.ranked`);
        None: by score alone.
    """

    def __init__(self, model: Gated, X, T, loss: str, compensation: str = "none", out_shape=None,
                 evaluator: Evaluator | None = None):
        self.model, self.X, self.T = model, _plain(X), _plain(T)
        # one sample's output shape (the targets' shape without the sample axis)
        self.out_shape = tuple(T.shape[1:]) if T is not None else (tuple(out_shape) if out_shape else None)
        self.loss = losses.check_loss(loss)
        if self.loss == "cross-entropy" and isinstance(self.T, torch.Tensor) and self.T.is_floating_point() \
                and self.T.numel() and ((self.T < 0) | (self.T > 1)).any():
            raise ShrinkNetError(f"T: expected targets in [0, 1] for cross-entropy (class probabilities, 0/1 rows), got "
                                 f"values from {float(self.T.min()):g} to {float(self.T.max()):g}; use loss='sse' for others")
        self.evaluator = evaluator_for(model) if evaluator is None else evaluator
        self.compensation = self.evaluator.check_compensation(compensation, model)
        if isinstance(self.X, torch.Tensor):
            self.evaluator.check_memory(model, self.X)
        self.state: dict = {}
        self.on_candidates = None
        self.costs = None
        self._caches: dict = {}

    @classmethod
    def start(cls, model, X, T, loss=None, *, units=None, output_activation=None, dtype=None, device=None,
              compensation: str = "none") -> "PruningContext":
        """Check the user's model and data and make a context on a gated working copy.

        ``model``: MLP, nn.Sequential, GatedModel or any nn.Module (see :func:`as_gated`); ``X`` as the
        model takes it (a tensor, or a tuple / dict of tensors passed as ``model(*X)`` /
        ``model(**X)``); ``T`` targets shaped like the output, integer labels, or (N,) for one
        output; ``loss`` None = cross-entropy for integer labels, else SSE.

        ``X`` may instead be a ``DataLoader`` (any re-iterable of (X, T) batches) with ``T=None``:
        every pass reads the batches again, so memory is bounded by the batch (the MLP class, whose
        fast oracle keeps its forward pass, gathers them into one tensor)."""
        with torch.inference_mode(False):
            if batch.is_loader(X):
                return cls._from_loader(model, X, T, loss, units, output_activation, dtype, device, compensation)
            work = as_gated(model, X, units=units, output_activation=output_activation, dtype=dtype, device=device,
                            name="X")
            p = work.gates[0]
            ev = evaluator_for(work)
            X = ev.check_x(work, X, p.dtype, p.device)
            work.check_finite()
            with torch.no_grad():
                out = work.logits(batch.take(X, slice(0, 1)))
            _check_output(out, work)
            loss = default_loss(loss, T, out.shape[1:], work.output_activation)
            T = check_targets(T, batch.rows(X), out.shape[1:], p.dtype, p.device)
            return cls(work, X, T, loss, compensation, evaluator=ev)

    @classmethod
    def _from_loader(cls, model, loader, T, loss, units, output_activation, dtype, device, compensation):
        if T is not None:
            raise ShrinkNetError("T: expected None when X is a DataLoader (or re-iterable) of (X, T) batches, got "
                                 f"{type(T).__name__}")
        first = next(iter(_raw(loader)))
        work = as_gated(model, first[0], units=units, output_activation=output_activation, dtype=dtype, device=device,
                        name="X (first batch)")
        p = work.gates[0]
        ev = evaluator_for(work)
        work.check_finite()
        with torch.no_grad():
            out = work.logits(batch.take(ev.check_x(work, first[0], p.dtype, p.device, "X (first batch)"), slice(0, 1)))
        _check_output(out, work)
        shape = tuple(out.shape[1:])
        loss = default_loss(loss, first[1], shape, work.output_activation)

        def convert(Xb, Tb, k):
            Xb = _plain(ev.check_x(work, Xb, p.dtype, p.device, f"X (batch {k})"))
            return Xb, _plain(check_targets(Tb, batch.rows(Xb), shape, p.dtype, p.device))
        stream = batch.Stream(loader, convert)
        if ev.gathers_loader:                # its kept pass needs the data in memory: one tensor
            parts = list(stream)
            return cls(work, torch.cat([x for x, _ in parts]), torch.cat([t for _, t in parts]), loss, compensation,
                       evaluator=ev)
        return cls(work, stream, None, loss, compensation, out_shape=shape, evaluator=ev)

    @property
    def streaming(self) -> bool:
        """Whether the data are read batch by batch from a loader (nothing kept between passes)."""
        return isinstance(self.X, batch.Stream)

    @property
    def data(self) -> batch.Data:
        """The context's (X, T) as the lower layers take them."""
        return batch.Data(self.X, self.T)

    def chunks(self, rows: int):
        """The context's (X, T) in pieces of at most ``rows`` samples."""
        return batch.chunks(self.X, self.T, rows)

    def with_data(self, X: torch.Tensor, T: torch.Tensor) -> "PruningContext":
        """The same model, compensation, kept passes and criteria's state, evaluated on other data (e.g.
        a subset); the evaluator's state for the run starts afresh on them."""
        new = copy.copy(self)
        new.X, new.T = _plain(X), _plain(T)
        new.evaluator = self.evaluator.fork()
        return new

    def fork(self) -> "PruningContext":
        """A context on a copy of the model (same data, loss and compensation; its own caches and state)."""
        return PruningContext(self.model.clone(), self.X, self.T, self.loss, self.compensation, self.out_shape,
                              evaluator=self.evaluator.fork())

    # ---- forward passes ---------------------------------------------------------------
    def cache(self, X: torch.Tensor | None = None) -> caching.Cache:
        """The model's forward pass on X (default the context's data), kept while neither X, the
        weights nor the gates have changed; :meth:`set_gate` brings it up to date in place.

        Changes are seen through torch's version counters, which every in-place torch operation
        bumps; a write that bypasses torch (through a ``.numpy()`` view or ``.data``) is not seen."""
        X = self.X if X is None else X
        if isinstance(X, batch.Stream):
            raise ShrinkNetError("this needs the data in memory (a kept forward pass); expected tensors, got a "
                                 "DataLoader")
        key = self.state_key(X)
        hit = self._caches.pop(id(X), None)          # (a stale entry gives its slot back)
        if hit is not None and hit[0] is X and hit[1] == key:
            self._caches[id(X)] = hit
            return hit[2]
        c = self.evaluator.build(self.model, X)
        if len(self._caches) >= KEEP_CACHES:
            self._caches.pop(next(iter(self._caches)))
        self._caches[id(X)] = (X, key, c)
        return c

    def state_key(self, X=None, state=None) -> tuple:
        """What a result computed on X (default the context's data) depends on: X, the weights, the
        gates, the buffers, as version keys (torch bumps a tensor's _version on every in-place change)."""
        X = self.X if X is None else X
        data = [(id(X), 0)] if isinstance(X, batch.Stream) else caching.version_key(batch.leaves(X))
        return (*data, *caching.version_key(self.model.state_tensors() if state is None else state))

    def set_gate(self, layer: int, unit: int, value: float) -> None:
        """Set one gate of the model; kept forward passes are brought up to date by recomputing only
        what depends on it (identical to a fresh pass)."""
        state = self.model.state_tensors()          # read once: pruning calls this at every step
        valid = [(k, X, c) for k, (X, key, c) in self._caches.items() if key == self.state_key(X, state)]
        self.model.set_gate(layer, unit, value)
        for k, X, c in valid:
            if self.evaluator.update(self.model, c, layer, unit):
                self._caches[k] = (X, self.state_key(X, state), c)
            else:
                del self._caches[k]

    def remove(self, layer: int, unit: int):
        """Switch unit (layer, unit) off, compensating as the context says; returns a function that
        undoes it."""
        return self.evaluator.remove(self, layer, unit)

    # ---- what the criteria read -------------------------------------------------------------
    def unit_derivatives(self, second: bool, compensated: bool = True):
        """Per group: sum_n u dE/do and (``second``) an estimate of sum_n u^2 d2E/do^2, u the change a
        removal makes to the unit's output (with the context's compensation, where ``compensated``):
        the MLP's OBD recursion, any other model's Gauss-Newton diagonal (see derivatives.py)."""
        return self.evaluator.unit_derivatives(self, second, compensated)

    def unit_outputs(self):
        """Yield (group, un-gated output of its units) over all of the context's data."""
        return self.evaluator.unit_outputs(self)

    # ---- what the loop measures -------------------------------------------------------------
    def error(self) -> torch.Tensor:
        """E of the model as it is on the context's data (a 0-d tensor; summed over all ranks)."""
        m = self.model
        if self.streaming:
            with torch.no_grad():
                E = sum(losses.per_row(m.outputs(Xb), Tb, m.output_activation, self.loss).double().sum()
                        for Xb, Tb in self.chunks(samples_per_pass(m)))
            return dist.sum_(E).to(m.gates[0].dtype)
        return dist.sum_(losses.error(self.cache().z, self.T, m.output_activation, self.loss))

    def measure(self, X: torch.Tensor | None = None, T: torch.Tensor | None = None, classes: bool | None = None):
        """(E, accuracy or None) of the model as it is, on the context's data or (X, T); under
        torch.distributed each rank's X is its shard, and the sums are over all ranks."""
        if isinstance(self.X if X is None else X, batch.Stream):
            data = self.X if X is None else X
            classes = (self.classes() if X is None else dist.all_true(all(has_classes(Tb) for _, Tb in data))) \
                if classes is None else classes
            E, right, n = 0.0, 0.0, 0
            m = self.model
            for Xb, Tb in batch.chunks(data, None, samples_per_pass(m)):
                e, a = error_and_accuracy(m.outputs(Xb), Tb, m.output_activation, self.loss, classes)
                E, right, n = E + e, right + (a or 0.0) * _labelled(Tb), n + _labelled(Tb)
        else:
            T = self.T if X is None else T
            classes = dist.all_true(has_classes(T)) if classes is None else classes
            E, a = error_and_accuracy(self.cache(X).z, T, self.model.output_activation, self.loss, classes)
            if dist.world_size() == 1:
                return E, a
            right, n = (a or 0.0) * _labelled(T), _labelled(T)
        E, right, n = dist.sum_(torch.tensor([E, right, float(n)], dtype=torch.float64)).tolist()
        return E, (right / n if classes and n else None)

    def classes(self) -> bool:
        """Whether the targets are classes (one-hot rows, or 0/1 for one output) on every batch and rank."""
        if self.streaming:
            flag = all(has_classes(Tb) for _, Tb in self.X)
        else:
            flag = has_classes(self.T)
        return dist.all_true(flag)

    def inputs(self, X, name: str = "X", t_name: str = "T"):
        """Other data (e.g. a test set) checked against the model and put on its device and dtype; a
        DataLoader of (X, T) batches becomes a stream checked batch by batch (its targets named
        ``t_name`` in errors)."""
        p = self.model.gates[0]
        if batch.is_loader(X):
            m, shape = self.model, self.out_shape

            def convert(Xb, Tb, k):
                Xb = _plain(self.evaluator.check_x(m, Xb, p.dtype, p.device, f"{name} (batch {k})"))
                return Xb, _plain(check_targets(Tb, batch.rows(Xb), shape, p.dtype, p.device, f"{t_name} (batch {k})"))
            return batch.Stream(X, convert, name)
        with torch.inference_mode(False):
            return _plain(self.evaluator.check_x(self.model, X, p.dtype, p.device, name))

    def targets(self, T, n: int, name: str = "test T") -> torch.Tensor:
        """Other targets (e.g. a test set's, for n samples) shaped like the model's output, on its
        device and dtype."""
        p = self.model.gates[0]
        with torch.inference_mode(False):
            return _plain(check_targets(T, n, self.out_shape, p.dtype, p.device, name))


def _labelled(T: torch.Tensor) -> int:
    """Samples whose accuracy counts: all of them, or for outputs with positions the labelled positions."""
    return int(T.shape[0]) if T.ndim <= 2 else int((T.reshape(-1, T.shape[-1]).sum(1) != 0).sum())


def _raw(loader):
    """A loader's (X, T) batches as they come (checked only for being pairs)."""
    return batch.Stream(loader, lambda X, T, k: (X, T))


def evaluate(model, X, T, loss: str | None = None, *, output_activation: str | None = None,
             progress: bool | None = None) -> dict:
    """Error (summed over samples) and, for class targets, accuracy of ``model`` as it is.

    ``model`` is an MLP (or nn.Sequential MLP), a GatedModel, or any nn.Module whose output the loss reads
    through ``output_activation`` (default identity: logits). ``loss`` None = cross-entropy for integer
    labels, else SSE (a bfloat16 / float16 model is measured on a float32 copy, as :func:`prune` measures
    it). ``X`` may be a DataLoader of (X, T) batches with ``T=None``. Under
    torch.distributed, the sums are over every rank's data. Nothing is kept on the model. ``progress``
    (a loader's batches): None shows a bar once the pass has run 2 s, True from the start, False never.
    Returns ``{"error", "accuracy" (or None), "n"}``."""
    progress = _progress.check(progress)
    with torch.inference_mode(False):
        if not isinstance(model, nn.Module):
            raise ShrinkNetError(f"model: expected shrinknet.MLP or a torch nn.Module, got {type(model).__name__}")
        model = unwrap_compiled(model)
        check_materialized(model)
        if any(p.dtype in HALF for p in model.parameters()):
            # a bfloat16 / float16 model is measured in float32, as prune measures it (see as_gated)
            model = model.clone(dtype=torch.float32) if isinstance(model, Gated) else copy.deepcopy(model).float()
        if batch.is_loader(X):
            if T is not None:
                raise ShrinkNetError("T: expected None when X is a DataLoader (or re-iterable) of (X, T) batches, "
                                     f"got {type(T).__name__}")
            parts = []
            for Xb, Tb in _progress.bar(_raw(X), desc="evaluate", progress=progress, unit="batch",
                                        total=len(X) if hasattr(X, "__len__") else None):
                parts.append(_evaluate(model, Xb, Tb, loss, output_activation))
                loss = parts[0][5]        # one loss for the whole loader: the first batch's choice
        else:
            parts = [_evaluate(model, X, T, loss, output_activation)]
        classes = dist.all_true(all(p[4] for p in parts))
        E, right, labelled, n = dist.sum_(torch.tensor([p[:4] for p in parts], dtype=torch.float64).sum(0)).tolist()
        return {"error": E, "accuracy": right / labelled if classes and labelled else None, "n": int(n)}


def _evaluate(model, X, T, loss, output_activation):
    """(E, samples right, samples counted, samples, whether T are classes) on one batch (samples counted:
    the labelled positions, for outputs with positions)."""
    gated = model if isinstance(model, Gated) else _as_mlp(model, None, output_activation)
    if gated is not None:
        if output_activation is not None and output_activation != gated.output_activation:
            raise ShrinkNetError(f"output_activation: a {type(gated).__name__} has its own; expected None, got "
                                 f"{output_activation!r}")
        gated.check_finite()
        p = gated.gates[0]
        ev = evaluator_for(gated)
        X = _plain(ev.check_x(gated, X, p.dtype, p.device))
        z = ev.build(gated, X).z               # as the pruning loop measures it
        output = gated.output_activation
    else:
        output = check_output(output_activation or "identity")
        p = next(iter(model.parameters()), None)
        X = batch.check(X, "X", p.dtype if p is not None else torch.float32, p.device if p is not None else None)
        try:
            z = outputs(model, X)
        except (RuntimeError, TypeError, IndexError, ValueError) as e:
            raise ShrinkNetError(f"X: the model cannot take inputs ({batch.describe(X)}): {e}") from None
        _check_output(z, model)
    loss = default_loss(loss, T, z.shape[1:], output)
    T = check_targets(T, batch.rows(X), z.shape[1:], z.dtype, z.device)
    classes = has_classes(T)
    E, acc = error_and_accuracy(z, T, output, loss, classes)
    return E, (acc or 0.0) * _labelled(T), _labelled(T), batch.rows(X), classes, loss


def _as_mlp(model, units, output_activation, dtype=None):
    """The MLP an ``nn.Sequential`` of Linear layers and one activation stands for, or None (any other
    model, or one whose units or output activation the caller chooses). A Sequential that flattens
    its input is left to the gated path, which passes inputs as the model takes them."""
    if (not isinstance(model, nn.Sequential) or units is not None or output_activation is not None
            or any(isinstance(m, nn.Flatten) for m in model)):
        return None
    try:
        return MLP.from_sequential(model, dtype=dtype)
    except ShrinkNetError:
        return None


def _check_output(z, model) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim < 2:
        raise ShrinkNetError(f"model: expected outputs of shape (N, n_out) or (N, ..., n_out), got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")


__all__ = ["PruningContext", "as_gated", "default_loss", "evaluate"]
