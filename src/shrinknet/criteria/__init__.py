"""Pruning criteria, looked up by name: one registry, each criterion written once.

A criterion scores every unit of a gated model in a pruning context: ``scores(ctx)`` returns, for
every group l, a (K_l,) tensor with the estimated change in error E when that unit is switched off
(NaN for units already removed); lower = better to remove. It reads the model only through the
gated-model interface (:class:`shrinknet.gating.Gated`) and the oracle (:mod:`shrinknet.oracle`),
so it works on the MLP class and on any ``nn.Module`` alike; where the MLP has a faster exact path,
the oracle takes it. A criterion may also offer ``best(ctx)``: the (layer, unit, score) that ranks
first at the current step, found with less work than scoring every unit (None: score them all);
an iterative prune asks it at every step.

Register your own with the decorator; the function takes the context (``ctx.model``, ``ctx.X``,
``ctx.T``, ``ctx.loss``, ``ctx.cache()``, ``ctx.state``). A function of ``(model, X, T, loss)``, the
older form, is accepted too.

    >>> from shrinknet.criteria import register_criterion
    >>> @register_criterion("my-criterion")
    ... def mine(ctx):
    ...     return [torch.zeros(k) for k in ctx.model.hidden_sizes]
"""
from ._registry import (_REGISTRY, Criterion, as_criterion, available_criteria, by_group,  # noqa: F401
                        check_scores, criterion_name, describe_criteria, get_criterion, mark_removed, ranked,
                        register_criterion)
from . import approximate, brute_force, classic, taylor  # noqa: F401  (registers the built-ins)

__all__ = ["Criterion", "register_criterion", "get_criterion", "available_criteria", "describe_criteria",
           "mark_removed", "by_group", "as_criterion", "check_scores", "ranked"]
