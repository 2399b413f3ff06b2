"""Taylor estimates of dE_k, the change in error when neuron k's output o_k goes to 0.

    taylor1        dE1_k = - sum_n o_kn dE_n/do_kn                       (Skeletonization-style)
    taylor2        dE2_k = dE1_k + 1/2 sum_n o_kn^2 d2E_n/do_kn^2          (the paper's)
                   with d2E/do^2 from the OBD-style *diagonal* back-propagation:
                     output:  d2E/dz^2 (closed form per activation and loss, see losses.py)
                     hidden:  d2E/do_j^2 = sum_i d2E/dx_i^2 w_ij^2
                              d2E/dx_j^2 = d2E/do_j^2 f'(x_j)^2 + dE/do_j f''(x_j)
    taylor2-exact  same formula with the exact d2E/do_k^2 (cross terms kept), i.e. the
                   second-order Taylor expansion in neuron k's gain, by forward-mode AD.
    taylor2-mean / taylor2-median
                   the paper's optional thresholding: second-order estimates that lie
                   more than 3 standard deviations (mean) or 3 scaled MADs (median) from
                   the mean / median of all remaining neurons' estimates are replaced by
                   that mean / median.

With gates g != 1 the neuron's output is o = g f(x), so these are Taylor expansions in o
around the current (gated) output, as the paper's are. With compensation on (see
compensation.py) the removal moves o by its residual u instead of by o, and o is replaced by u.
ReLU has f'' = 0, so the OBD recursion carries no activation curvature through ReLU layers:
taylor2 then only adds the output layer's curvature propagated through squared weights.
"""
from __future__ import annotations

import torch

from .. import compensation, losses
from ..oracle.rank1 import output_scaling_derivatives
from . import mark_removed, register_criterion

#: outliers for thresholding: farther than this many (robust) standard deviations
OUTLIER_SIGMAS = 3.0


@torch.no_grad()
def obd_backprop(model, cache, T, loss):
    """Per hidden layer: dE_n/do (N, K_l) exact, and d2E_n/do^2 (N, K_l) by the OBD diagonal recursion."""
    act = model._act
    dx, d2x = losses.output_derivatives(cache.z, T, model.output_activation, loss)   # (N, n_out)
    d_out, d2_out = [None] * model.n_hidden_layers, [None] * model.n_hidden_layers
    for l in reversed(range(model.n_hidden_layers)):
        W = model.layers[l + 1].weight                       # (K_{l+1}, K_l)
        do = dx @ W                                           # dE/do_j = sum_i dE/dx_i w_ij
        d2o = d2x @ (W * W)                                   # d2E/do_j^2 ~ sum_i d2E/dx_i^2 w_ij^2
        d_out[l], d2_out[l] = do, d2o
        g = model.gates[l]
        f1 = act.d1(cache.pre[l], cache.act[l]) * g           # d o / d x = g f'(x)
        f2 = act.d2(cache.pre[l], cache.act[l]) * g
        dx, d2x = do * f1, d2o * f1 * f1 + do * f2
    return d_out, d2_out


def _residuals(model, cache):
    """Per layer (N, K_l): the output change a removal causes, as -u (u = o without compensation)."""
    out = []
    for l, g in enumerate(model.gates):
        u = torch.zeros_like(cache.out[l])
        units = torch.nonzero(g != 0).flatten()
        if units.numel():
            u[:, units] = compensation.residuals(model, cache, l, units)
        out.append(u)
    return out


def _taylor(model, X, T, loss, second: bool):
    cache = model.cache(X)
    d_out, d2_out = obd_backprop(model, cache, T, loss)
    out = []
    for u, d, d2 in zip(_residuals(model, cache), d_out, d2_out):
        s = -(u * d).sum(0)
        if second:
            s = s + 0.5 * (u * u * d2).sum(0)
        out.append(s)
    return mark_removed(model, out)


@register_criterion("taylor1")
def taylor1(model, X, T, loss):
    """First-order Taylor estimate -sum o dE/do (Skeletonization-style)."""
    return _taylor(model, X, T, loss, second=False)


@register_criterion("taylor2")
def taylor2(model, X, T, loss):
    """Second-order Taylor estimate with the paper's OBD diagonal back-propagation."""
    return _taylor(model, X, T, loss, second=True)


@register_criterion("taylor2-exact")
def taylor2_exact(model, X, T, loss):
    """Second-order Taylor estimate with the exact d2E/do^2 (gain Hessian diagonal, by AD)."""
    cache = model.cache(X)
    out = []
    for l, g in enumerate(model.gates):
        s = torch.full_like(g, float("nan"))
        units = torch.nonzero(g != 0).flatten()
        if units.numel():
            u = compensation.residuals(model, cache, l, units)
            d1, d2 = output_scaling_derivatives(model, cache, T, loss, l, units, direction=u)
            s[units] = -d1 + 0.5 * d2
        out.append(s)
    return out


def threshold(scores: list[torch.Tensor], how: str, sigmas: float = OUTLIER_SIGMAS) -> list[torch.Tensor]:
    """Replace outlying estimates (pooled over all layers) by their mean or median."""
    flat = torch.cat([s.flatten() for s in scores])
    v = flat[~torch.isnan(flat)]
    if v.numel() < 2:
        return scores
    if how == "mean":
        center, spread = v.mean(), v.std()
    else:
        center = v.median()
        spread = 1.4826 * (v - center).abs().median()       # MAD scaled to a normal's sigma
    if spread == 0:
        return scores
    return [torch.where((s - center).abs() > sigmas * spread, center, s) for s in scores]


@register_criterion("taylor2-mean")
def taylor2_mean(model, X, T, loss):
    """taylor2 with outlying estimates (> 3 std from the mean) set to the mean."""
    return threshold(taylor2(model, X, T, loss), "mean")


@register_criterion("taylor2-median")
def taylor2_median(model, X, T, loss):
    """taylor2 with outlying estimates (> 3 scaled MAD from the median) set to the median."""
    return threshold(taylor2(model, X, T, loss), "median")
