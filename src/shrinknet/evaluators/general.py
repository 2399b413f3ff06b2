"""Any gated model: every candidate of a group in one batched (vmapped) pass.

The kept pass is the output alone, rebuilt after a change; the exact oracle runs the model with one
per-sample gate row per candidate (:mod:`shrinknet.oracle.replicated`), skipping units whose output
is exactly 0 everywhere; the Taylor criteria read the Gauss-Newton diagonal
(:func:`shrinknet.derivatives.gauss_newton`). Compensation refits a unit's consumer (transformer FFN
neurons and heads): while it is on, the model's gates move a unit's columns by its residual, so the
oracle and the derivatives score the compensated removal through the gates alone.
"""
from __future__ import annotations

import contextlib

import torch

from .. import compensation
from .. import derivatives
from .. import inputs as batch
from .._validation import ShrinkNetError
from ..oracle import replicated
from .base import Evaluator


class GeneralEvaluator(Evaluator):
    """The evaluator of any :class:`~shrinknet.gating.GatedModel` (see the module's docstring).

    Attributes (the run's state, each kept while the data, weights and gates are unchanged, as
    ``(ctx.state_key(), value)``): ``silent`` (per group, the units whose output is 0 on every
    sample), ``stats`` (compensation's means and Gram matrices), ``residuals`` (its residual maps);
    ``vmap`` says whether vmap still runs the model."""

    compensates_through_gates = True

    def __init__(self):
        self.silent = self.stats = self.residuals = None
        self.vmap = replicated.VmapState()

    def check_x(self, model, X, dtype, device, name: str = "X"):
        """X checked against the model's inputs: the same form (tensor, tuple or dict with the same
        keys) and the same shape per sample as the example it was traced on."""
        X = batch.check(X, name, dtype, device)
        want, got = batch.sample_shapes(model.example), batch.sample_shapes(X)
        kind = (lambda v: type(v).__name__)                  # Tensor, tuple or dict: compared as kinds, not shapes
        if kind(model.example) != kind(X) or (isinstance(want, dict) and set(want) != set(got)) or (
                isinstance(X, tuple) and len(want) != len(got)):
            raise ShrinkNetError(f"{name}: expected inputs of the form the model was traced on "
                                 f"({batch.describe(model.example)}), got {batch.describe(X)}")
        if want != got:
            if isinstance(X, torch.Tensor):
                raise ShrinkNetError(f"{name}: expected samples of shape {want}, got {got}")
            raise ShrinkNetError(f"{name}: expected samples shaped as {want}, got {got} (every batch must have the "
                                 f"shape the model was traced on: pad sequences to one length)")
        return X

    # ---- the run's kept statistics ------------------------------------------------------
    def _kept(self, ctx, field: str, compute):
        key = ctx.state_key()
        hit = getattr(self, field)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        setattr(self, field, (key, value))
        return value

    def silent_units(self, ctx) -> list[torch.Tensor]:
        return self._kept(ctx, "silent", lambda: replicated.silent(ctx.model, ctx.data))

    def consumer_stats(self, ctx):
        m = ctx.model
        return self._kept(ctx, "stats",
                          lambda: compensation.consumer_stats(m, ctx.chunks(m.batch_rows), ctx.compensation))

    def residual_maps(self, ctx) -> dict:
        return self._kept(ctx, "residuals",
                          lambda: compensation.residual_maps(ctx.model, self.consumer_stats(ctx), ctx.compensation))

    # ---- the exact oracle -----------------------------------------------------------------
    def errors_without(self, ctx, layer: int, units) -> torch.Tensor:
        m = ctx.model
        units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
        with self.compensated(ctx):
            silent = self.silent_units(ctx)[layer]
            return replicated.errors_without(m, ctx.data, ctx.loss, layer, units, ctx.error(), silent, self.vmap)

    def errors_with_gains(self, ctx, layer: int, units, gains) -> torch.Tensor:
        return replicated.errors_with_gains(ctx.model, ctx.data, ctx.loss, layer, units, gains, self.vmap)

    def removal_derivatives(self, ctx, layer: int, units):
        m = ctx.model
        units = torch.as_tensor(units, dtype=torch.long, device=m.gates[layer].device)
        with self.compensated(ctx):
            return replicated.removal_derivatives(m, ctx.data, ctx.loss, layer, units)

    # ---- derivatives and statistics ------------------------------------------------------------
    def unit_derivatives(self, ctx, second: bool, compensated: bool = True):
        """dE/dg and the Gauss-Newton diagonal by autograd (per-sample gate rows), times g and g^2."""
        m = ctx.model
        with self.compensated(ctx) if compensated else contextlib.nullcontext():
            grads, gns = derivatives.gauss_newton(m, ctx.chunks(m.batch_rows), ctx.loss, second)
        return [g * d for g, d in zip(m.gates, grads)], [g * g * h for g, h in zip(m.gates, gns)]

    def unit_outputs(self, ctx):
        return ctx.model.unit_outputs(ctx.chunks(ctx.model.batch_rows))

    def second_order_passes(self, ctx) -> int | None:
        """One for dE/dg, and one per output and position for the Gauss-Newton diagonal."""
        return derivatives.backward_passes(ctx.model, ctx.out_shape) if ctx.out_shape else None

    # ---- compensation ------------------------------------------------------------------------
    def check_compensation(self, mode: str, model) -> str:
        return compensation.check_consumers(mode, model)

    def compensated(self, ctx):
        if ctx.compensation == "none":
            return contextlib.nullcontext()
        return ctx.model.compensating(self.residual_maps(ctx))

    def remove(self, ctx, layer: int, unit: int):
        m = ctx.model
        if ctx.compensation == "none":
            old = float(m.gates[layer][unit])
            ctx.set_gate(layer, unit, 0.0)
            return lambda: ctx.set_gate(layer, unit, old)
        return compensation.remove_consumer(m, self.consumer_stats(ctx), layer, unit, ctx.compensation, ctx.set_gate)
