"""The paper's MLP: its kept pass, its exact oracle by rank-1 updates and the compiled kernel.

A removal in hidden layer l moves the next layer's pre-activations by a rank-1 term, so every
candidate of a layer is evaluated at once from the kept pass, only downstream of the unit, and on
the CPU by the compiled kernel (:mod:`shrinknet.oracle.rank1`, :mod:`shrinknet.oracle.kernel`); an
iterative brute-force step is answered by the :class:`~shrinknet.oracle.stepper.Stepper` this
evaluator keeps for the run. Compensation refits the next layer (:func:`compensation.remove_dense`)
and the oracle scores it by using the neuron's residual as its change.
"""
from __future__ import annotations

import torch

from .. import _memory
from .. import compensation
from .. import derivatives
from .. import distributed as dist
from .._validation import check_inputs
from ..models import MLP
from ..oracle import cache as passes
from ..oracle import rank1
from ..oracle.stepper import Stepper
from .base import Evaluator


class DenseEvaluator(Evaluator):
    """The evaluator of :class:`shrinknet.MLP` (see the module's docstring)."""

    gathers_loader = True         # the fast oracle keeps its forward pass: one tensor

    def __init__(self):
        self.stepper: Stepper | None = None     # the run's brute-force stepper, made at its first step

    @staticmethod
    def takes(model) -> bool:
        return isinstance(model, MLP)

    def check_x(self, model, X, dtype, device, name: str = "X"):
        return check_inputs(X, model.input_shape[0], dtype, device, name)

    def check_memory(self, model, X) -> None:
        """The kept pass holds each hidden layer's activations and gated outputs and the output layer's
        pre-activations and outputs for the whole of X: refuse it up front where that cannot fit."""
        n = X.shape[0]
        values = n * (2 * sum(model.hidden_sizes) + 2 * model.sizes[-1])
        _memory.check_fits(values * X.element_size(), f"X: pruning this MLP on {n:,} samples",
                           "the criteria need a few thousand samples: pass a seeded subset, or dtype=torch.float32",
                           X.device)

    def build(self, model, X):
        return passes.build(model, X)

    def update(self, model, cache, layer: int, unit: int) -> bool:
        return passes.update(model, cache, layer, unit)

    def outputs(self, model, X, gates=None):
        return passes.outputs(model, X, gates)

    def errors_without(self, ctx, layer: int, units) -> torch.Tensor:
        m = ctx.model
        units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
        cache = ctx.cache()
        dh = -compensation.residuals(m, cache, layer, units, ctx.compensation)   # plain removal: -o
        return dist.sum_(rank1.errors_for_changes(m, cache, ctx.T, ctx.loss, layer, units, dh))

    def errors_with_gains(self, ctx, layer: int, units, gains) -> torch.Tensor:
        return dist.sum_(rank1.perturbed_errors(ctx.model, ctx.cache(), ctx.T, ctx.loss, layer, units, gains))

    def removal_derivatives(self, ctx, layer: int, units):
        m = ctx.model
        units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
        cache = ctx.cache()
        u = compensation.residuals(m, cache, layer, units, ctx.compensation)
        d1, d2 = rank1.output_scaling_derivatives(m, cache, ctx.T, ctx.loss, layer, units, direction=u)
        return -dist.sum_(d1), dist.sum_(d2)

    def best(self, ctx):
        if dist.world_size() > 1:
            return None          # the stepper would choose from this rank's sums alone
        if self.stepper is None:
            self.stepper = Stepper(ctx.model, ctx.X, ctx.T, ctx.loss, ctx.compensation)
        return self.stepper.best(ctx.cache(), ctx.costs) if self.stepper.applies else None

    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """The paper's OBD recursion from the kept pass; u is o itself or, with compensation, its
        residual (see compensation.py)."""
        m, cache = ctx.model, ctx.cache()
        d_out, d2_out = derivatives.obd(m, cache, ctx.T, ctx.loss)
        mode = ctx.compensation if compensated else "none"
        first, curv = [], []
        for l, (d, d2) in enumerate(zip(d_out, d2_out)):
            u = compensation.removed_outputs(m, cache, l, mode)
            first.append(dist.sum_((u * d).sum(0)))
            curv.append(dist.sum_((u * u * d2).sum(0)) if second else None)
        return first, curv

    def unit_outputs(self, ctx):
        yield from enumerate(ctx.cache().act)

    def check_compensation(self, mode: str, model) -> str:
        return compensation.check_mode(mode)

    def remove(self, ctx, layer: int, unit: int):
        cache = ctx.cache() if ctx.compensation != "none" else None
        return compensation.remove_dense(ctx.model, cache, layer, unit, ctx.compensation, ctx.set_gate)
