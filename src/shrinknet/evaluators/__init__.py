"""One evaluator per model kind: how a run evaluates its gated model.

An evaluator holds everything that depends on what kind of model a run prunes: the kept forward
pass and how a gate change updates it, the exact oracle (every candidate's error), the derivatives
the Taylor criteria read, compensation, and the run's state for them (the brute-force stepper, the
statistics compensation fits, which units are silent). :func:`evaluator_for` chooses it once, when
a :class:`~shrinknet.context.PruningContext` is made; the loop, the criteria, the context and the
oracle's entry points call it and never ask which kind of model they hold.

    dense.DenseEvaluator      the paper's MLP: rank-1 updates of the kept pass, the compiled kernel,
                              the stepper, the OBD derivatives, refits of the next layer
    general.GeneralEvaluator  any other gated model: batched / vmapped passes with per-sample gate
                              rows, Gauss-Newton derivatives, refits of a unit's consumer
"""
from __future__ import annotations

from .base import Evaluator
from .dense import DenseEvaluator
from .general import GeneralEvaluator


def evaluator_for(model) -> Evaluator:
    """A new evaluator for the gated ``model``: the MLP's where it is a :class:`shrinknet.MLP`, else
    the general one. The one place that asks which kind of model a run holds."""
    return DenseEvaluator() if DenseEvaluator.takes(model) else GeneralEvaluator()


__all__ = ["DenseEvaluator", "Evaluator", "GeneralEvaluator", "evaluator_for"]
