"""The brute-force oracle as a criterion: dE_k = E(net with k switched off) - E(net)."""
from __future__ import annotations

from .. import oracle
from ._registry import by_group, register_criterion


def brute_force(ctx):
    """Exact change in error when each unit is switched off."""
    E0 = oracle.current_error(ctx)
    return by_group(ctx, lambda l, units: oracle.errors_without(ctx, l, units) - E0)


def brute_force_best(ctx):
    """The top choice of an iterative step, where the run's evaluator has a faster route to it."""
    return oracle.best(ctx)


def brute_force_literal(ctx):
    """Exact change in error, one full forward pass per unit (the definition; slow)."""
    E0 = oracle.literal_error(ctx)
    return by_group(ctx, lambda l, units: oracle.literal_errors(ctx, l, units) - E0)


register_criterion("brute-force", brute_force, best=brute_force_best)
register_criterion("brute-force-literal", brute_force_literal)
