"""The brute-force oracle: dE_k = E(net with k switched off) - E(net)."""
from __future__ import annotations

import torch

from .. import oracle
from . import mark_removed, register_criterion


def _by_layer(model, X, T, loss, errors_fn):
    cache = model.cache(X)
    E0 = oracle.current_error(model, cache, T, loss)
    out = []
    for l, g in enumerate(model.gates):
        units = torch.nonzero(g != 0).flatten()
        s = torch.full_like(g, float("nan"))
        if units.numel():
            s[units] = errors_fn(cache, l, units, torch.zeros(units.numel(), dtype=T.dtype, device=T.device)) - E0
        out.append(s)
    return mark_removed(model, out)


@register_criterion("brute-force")
def brute_force(model, X, T, loss):
    """Exact change in error when each neuron is switched off (fast batched path)."""
    return _by_layer(model, X, T, loss,
                     lambda cache, l, u, a: oracle.perturbed_errors(model, cache, T, loss, l, u, a))


@register_criterion("brute-force-literal")
def brute_force_literal(model, X, T, loss):
    """Exact change in error, one full forward pass per neuron (the definition; slow)."""
    return _by_layer(model, X, T, loss,
                     lambda cache, l, u, a: oracle.literal_errors(model, X, T, loss, l, u, a))
