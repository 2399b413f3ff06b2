"""The brute-force oracle: dE_k = E(net with k switched off) - E(net)."""
from __future__ import annotations

import torch

from .. import compensation, losses
from ..oracle import rank1 as oracle
from ..oracle.stepper import Serial
from . import mark_removed, register_criterion


def _by_layer(model, X, T, loss, errors_fn):
    cache = model.cache(X)
    E0 = oracle.current_error(model, cache, T, loss)
    out = []
    for l, g in enumerate(model.gates):
        units = torch.nonzero(g != 0).flatten()
        s = torch.full_like(g, float("nan"))
        if units.numel():
            s[units] = errors_fn(cache, l, units) - E0
        out.append(s)
    return mark_removed(model, out)


def error_now(model, X, T, loss) -> torch.Tensor:
    """E of the model as it is (any gated model)."""
    return losses.total(model.cache(X).z, T, model.output_activation, loss)


def errors_without(model, X, T, loss, layer: int, units) -> torch.Tensor:
    """E after removing each of `units` of `layer`, exact, for the MLP class or any gated model; (C,)."""
    from ..gating import GatedModel
    if isinstance(model, GatedModel):
        from .generic import errors_after_removal
        return errors_after_removal(model, X, T, loss, layer, units)
    return removal_errors(model, model.cache(X), T, loss, layer, units)


def removal_errors(model, cache, T, loss, layer: int, units) -> torch.Tensor:
    """E after removing each of `units` of `layer` (with the model's compensation), fast path; (C,)."""
    dh = -compensation.residuals(model, cache, layer, units)   # plain removal: -o (see compensation.py)
    return oracle.errors_for_changes(model, cache, T, loss, layer, units, dh)


@register_criterion("brute-force")
def brute_force(model, X, T, loss):
    """Exact change in error when each neuron is switched off (fast batched path)."""
    return _by_layer(model, X, T, loss, lambda cache, l, u: removal_errors(model, cache, T, loss, l, u))


# an iterative prune needs only each step's lowest score: serial.Serial finds it with less work
brute_force.serial = Serial


@register_criterion("brute-force-literal")
def brute_force_literal(model, X, T, loss):
    """Exact change in error, one full forward pass per neuron (the definition; slow)."""
    mode = compensation.mode_of(model)
    if mode == "none":
        return _by_layer(model, X, T, loss, lambda cache, l, u: oracle.literal_errors(
            model, X, T, loss, l, u, torch.zeros(u.numel(), dtype=T.dtype, device=T.device)))

    def errors(cache, l, units):  # remove with compensation on a copy, run the whole net
        out = []
        for u in units.tolist():
            m = model.clone()
            compensation.remove(m, m.cache(X), l, u, mode)
            out.append(losses.total(m.logits(X), T, m.output_activation, loss))
        return torch.stack(out)
    return _by_layer(model, X, T, loss, errors)
