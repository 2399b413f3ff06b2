"""The record of one pruning run, and its JSON / CSV files."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ._io import write_text
from .context import as_gated
from ._validation import ShrinkNetError, ShrinkNetFileNotFoundError, check_path


class Keep(dict):
    """{unit group index: indices kept}, what :meth:`PruneResult.keep` returns: a dict, with the name of
    each group (``names[l]``, the module :func:`shrinknet.shrink` cuts) and a sample the pruned model
    took (``example``, to trace it) beside it."""

    def __init__(self, items=(), names=(), example=None):
        super().__init__(items)
        self.names = list(names)
        self.example = example          # one sample the pruned model took, to trace it (or None)

    def by_name(self) -> dict[str, list[int]]:
        """The same keep sets keyed by group name."""
        return {self.names[l]: v for l, v in self.items()}


@dataclass
class PruneResult:
    """What :func:`shrinknet.prune` did, step by step.

    Attributes
    ----------
    removed : list of (layer, unit)
        Hidden neurons in removal order (layer = hidden-layer index from 0).
    errors : list of float
        Evaluation error after each removal (same length as ``removed``).
    predicted : list of float
        The criterion's estimate of the change in error for the neuron it removed.
    accuracies : list of float or None
        Evaluation accuracy after each removal, where the targets are classes.
    gates : list of arrays
        Final gates, one (K_l,) array per hidden layer (0 = removed).
    """
    criterion: str
    schedule: str
    loss: str
    hidden_sizes: list
    initial_error: float
    initial_accuracy: float | None
    removed: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    predicted: list = field(default_factory=list)
    accuracies: list | None = None
    initial_test_error: float | None = None
    initial_test_accuracy: float | None = None
    test_errors: list | None = None
    test_accuracies: list | None = None
    gates: list = field(default_factory=list)
    initially_active: int = 0
    stop_reason: str = ""
    seconds: float = 0.0
    #: steps replayed from a checkpoint rather than computed (0 for a run from the start)
    resumed_steps: int = 0
    compensation: str = "none"
    #: names of the unit groups, in the order of ``hidden_sizes`` (module names; "layers.l" for an MLP)
    unit_names: list = field(default_factory=list)
    #: shape of one input sample, for models other than the MLP (to trace them when shrinking)
    input_shape: list | None = None
    #: for models other than the MLP: what the loss applied to their output
    output_activation: str | None = None
    #: the cost-aware choice's saving ("params" or "flops"; None: by score alone)
    cost: str | None = None
    #: with a budget or a cost: the whole model's parameters and FLOPs per sample (every unit kept), and
    #: those of the model shrink makes, before any removal and after each (as ``errors``)
    params_total: int | None = None
    flops_total: int | None = None
    initial_params_kept: int | None = None
    initial_flops_kept: int | None = None
    params_kept: list | None = None
    flops_kept: list | None = None
    #: the pruned model (gates set; with compensation, the refit weights too); not saved in JSON
    model: object = field(default=None, repr=False, compare=False)

    # ---- derived views ---------------------------------------------------------------
    @property
    def n_removed(self) -> int:
        return len(self.removed)

    @property
    def final_error(self) -> float:
        """The error after the last removal: ``initial_error`` where nothing was removed."""
        return self.errors[-1] if self.errors else self.initial_error

    @property
    def final_accuracy(self) -> float | None:
        """The accuracy after the last removal (``initial_accuracy`` where nothing was removed); None
        where the targets are not classes."""
        return self.accuracies[-1] if self.accuracies else self.initial_accuracy

    @property
    def actual_changes(self) -> list[float]:
        """Exact change in error caused by each removal."""
        prev = [self.initial_error] + self.errors[:-1]
        return [e - p for e, p in zip(self.errors, prev)]

    @property
    def percent_removed(self) -> list[float]:
        """After each step, removed neurons as a percentage of the initially active ones."""
        return [100.0 * (i + 1) / max(1, self.initially_active) for i in range(self.n_removed)]

    @property
    def fraction_kept(self) -> dict[str, float] | None:
        """{"params", "flops"}: the fractions of the whole model's kept at the end (None where not counted)."""
        if self.params_total is None:
            return None
        p = self.params_kept[-1] if self.params_kept else self.initial_params_kept
        f = self.flops_kept[-1] if self.flops_kept else self.initial_flops_kept
        return {"params": _share(p, self.params_total), "flops": _share(f, self.flops_total)}

    def keep(self) -> "Keep":
        """Hidden layer (unit group) index -> indices of the units still active at the end: a plain dict
        that also carries the groups' names, so that ``shrink(model, result.keep())`` works for every
        model (see :class:`Keep`)."""
        example = getattr(self.model, "example", None)
        if example is None and self.input_shape is not None:
            example = torch.zeros(1, *self.input_shape)
        return Keep({l: [int(i) for i in np.flatnonzero(np.asarray(g) != 0)] for l, g in enumerate(self.gates)},
                    self.unit_names or [f"layers.{l}" for l in range(len(self.gates))], example)

    def keep_by_name(self) -> dict[str, list[int]]:
        """Unit group name (module name) -> indices still active: the ``keep`` of :func:`shrinknet.shrink`."""
        return self.keep().by_name()

    def apply(self, model):
        """A gated copy of ``model`` with this result's final gates (the pruned model): an MLP, or for
        other models a :class:`~shrinknet.gating.GatedModel` (see :func:`shrinknet.shrink` for a
        physically smaller one)."""
        if self.compensation != "none":
            if self.model is None:
                raise ShrinkNetError("this result used compensation, whose refit weights are not kept in JSON: "
                                     "use the .model of the result that prune() returned")
            return self.model.clone()
        own = self.output_activation is None    # (prune() records None where the model has its own: the MLP)
        gated = as_gated(model, torch.zeros(1, *(self.input_shape or [])), units=None if own else self.unit_names,
                         output_activation=None if own else self.output_activation)
        return gated.set_gates([np.asarray(g) for g in self.gates])

    def rows(self) -> list[dict]:
        """One dict per step (step 0 = before any removal); ``params_kept`` / ``flops_kept``: the fraction
        of the whole model's kept (blank where not counted: a run without a budget or a cost)."""
        out = [{"step": 0, "layer": "", "unit": "", "predicted_change": "", "actual_change": "",
                "error": self.initial_error, "accuracy": _blank(self.initial_accuracy),
                "test_error": _blank(self.initial_test_error), "test_accuracy": _blank(self.initial_test_accuracy),
                "percent_removed": 0.0, **self._kept_row(None)}]
        for i, ((l, u), e, p, d) in enumerate(zip(self.removed, self.errors, self.predicted, self.actual_changes)):
            out.append({"step": i + 1, "layer": l, "unit": u, "predicted_change": p, "actual_change": d,
                        "error": e, "accuracy": _at(self.accuracies, i), "test_error": _at(self.test_errors, i),
                        "test_accuracy": _at(self.test_accuracies, i),
                        "percent_removed": self.percent_removed[i], **self._kept_row(i)})
        return out

    def _kept_row(self, i: int | None) -> dict:
        if self.params_total is None:
            return {"params_kept": "", "flops_kept": ""}
        p = self.initial_params_kept if i is None else self.params_kept[i]
        f = self.initial_flops_kept if i is None else self.flops_kept[i]
        return {"params_kept": _share(p, self.params_total), "flops_kept": _share(f, self.flops_total)}

    # ---- files ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        d["removed"] = [[int(l), int(u)] for l, u in self.removed]
        d["gates"] = [np.asarray(g, dtype=float).tolist() for g in self.gates]
        return d

    def save_json(self, path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=1))

    def save_csv(self, path) -> Path:
        rows = self.rows()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        return write_text(path, buf.getvalue())

    @classmethod
    def load_json(cls, path) -> "PruneResult":
        """Read a result written by :meth:`save_json`; a missing file raises
        :class:`~shrinknet._validation.ShrinkNetFileNotFoundError` (a FileNotFoundError)."""
        path = check_path(path)
        if not path.is_file():
            raise ShrinkNetFileNotFoundError(f"result file {path}: not found")
        try:
            d = json.loads(Path(path).read_text())
            d["removed"] = [tuple(x) for x in d["removed"]]
            d["gates"] = [np.asarray(g) for g in d["gates"]]
            d.pop("model", None)
            return cls(**d)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ShrinkNetError(f"result file {path}: not a readable shrinknet result ({e})") from None


def layer_counts(result: PruneResult) -> list[list[int]]:
    """After each step, how many neurons have been removed from each hidden layer."""
    counts, out = [0] * len(result.hidden_sizes), []
    for l, _ in result.removed:
        counts[l] += 1
        out.append(list(counts))
    return out


def _share(n: int, total: int) -> float:
    return n / total if total else 1.0


def _blank(v):
    return "" if v is None else v


def _at(seq, i):
    return "" if seq is None else seq[i]
