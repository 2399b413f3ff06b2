"""The field's common cheap criteria, behind the same interface.

These are importance scores, not estimates of the change in error: lower = removed first, and only
their ranking matters (``shrinknet.compare`` judges exactly that against the oracle).

    random               seeded uniform scores (the seed is the number of active neurons, so a run
                         is reproducible and every step draws afresh)
    l1-in, l2-in         norm of the neuron's incoming weights (its row of W_l)
    l1-out, l2-out       norm of its outgoing weights to still-active neurons (its column of W_{l+1})
    mean-activation      mean |o| over the samples
    activation-variance  variance of o over the samples
    apoz                 1 - APoZ, the share of samples where the neuron is not zero (Hu et al. 2016);
                         meant for ReLU nets, where APoZ is high for idle neurons (0 for sigmoid nets)
    taylor1-abs          |sum_n o dE/do| (Molchanov et al. 2017)
"""
from __future__ import annotations

import torch

from . import mark_removed, register_criterion
from .taylor import obd_backprop


def _weights(model, p: int, direction: str):
    out = []
    for l, g in enumerate(model.gates):
        if direction == "in":
            W = model.layers[l].weight                                    # (K_l, K_{l-1}) rows = neurons
            if l:                                                         # inputs from removed neurons are silent
                W = W * (model.gates[l - 1] != 0)
            out.append(W.abs().pow(p).sum(1).pow(1 / p))
        else:
            W = model.layers[l + 1].weight                                # (K_{l+1}, K_l) columns = neurons
            if l + 1 < model.n_hidden_layers:
                W = W * (model.gates[l + 1] != 0)[:, None]
            out.append(W.abs().pow(p).sum(0).pow(1 / p))
    return mark_removed(model, out)


for _p in (1, 2):
    for _d in ("in", "out"):
        register_criterion(f"l{_p}-{_d}", (lambda p, d: lambda model, X, T, loss: _weights(model, p, d))(_p, _d),
                           description=f"L{_p} norm of the neuron's {'incoming' if _d == 'in' else 'outgoing'} weights")


@register_criterion("random", generic=True)
def random_scores(model, X, T, loss):
    """Seeded random scores (seed = number of active neurons)."""
    g = torch.Generator().manual_seed(model.n_active())
    return mark_removed(model, [torch.rand(k, generator=g, dtype=torch.float64).to(gt) for k, gt in
                                zip(model.hidden_sizes, model.gates)])


@register_criterion("mean-activation")
def mean_activation(model, X, T, loss):
    """Mean |o| of the neuron over the samples."""
    return mark_removed(model, [a.abs().mean(0) for a in model.cache(X).act])


@register_criterion("activation-variance")
def activation_variance(model, X, T, loss):
    """Variance of the neuron's output over the samples."""
    return mark_removed(model, [a.var(0, unbiased=False) for a in model.cache(X).act])


@register_criterion("apoz")
def apoz(model, X, T, loss):
    """1 - average percentage of zeros (for ReLU nets): idle neurons first."""
    return mark_removed(model, [(a != 0).to(a.dtype).mean(0) for a in model.cache(X).act])


@register_criterion("taylor1-abs")
def taylor1_abs(model, X, T, loss):
    """|sum_n o dE/do| (Molchanov et al. 2017)."""
    cache = model.cache(X)
    d_out, _ = obd_backprop(model, cache, T, loss)
    return mark_removed(model, [(o * d).sum(0).abs() for o, d in zip(cache.out, d_out)])
