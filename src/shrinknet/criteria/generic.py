"""Every built-in criterion on any gated model (:class:`shrinknet.gating.GatedModel`).

The MLP class has closed forms; an arbitrary model has only its forward pass and autograd, so
here each criterion is written through the gates g (o_k = g_k a_k for the unit's output a_k):

    brute-force          exact E(g_k = 0) - E. All candidates of a layer run in one batched forward
                         pass: the data are repeated once per candidate and each copy gets its own
                         per-sample gate row with that candidate's gate at 0 (chunked to model.batch_rows rows).
    brute-force-literal  the same, one full forward pass per candidate (the definition).
    taylor1              -g_k dE/dg_k  (= -sum_n o_kn dE/do_kn, as for the MLP), one backward pass.
    taylor1-abs          |g_k dE/dg_k|.
    taylor2              taylor1 + 1/2 g_k^2 GN_k with GN_k = sum_n J_nk^T H_n J_nk the Gauss-Newton
                         diagonal: J_nk = dz_n/dg_k (per-sample, by one backward pass per output),
                         H_n = d2E_n/dz_n^2 (the loss's exact Hessian in the outputs). The exact
                         d2E/dg_k^2 adds sum_i dE/dz_i d2z_i/dg_k^2, the curvature of the network
                         itself; it is zero when z is linear in g_k, i.e. for piecewise-linear nets
                         (ReLU, max-pool, BatchNorm in eval mode, residual additions). So on ReLU nets
                         taylor2 is the exact second-order Taylor estimate; on GELU / sigmoid nets it
                         drops the activations' curvature (the paper's OBD recursion keeps that term
                         but drops cross terms; it exists only for the MLP class).
    taylor2-exact        taylor1 + 1/2 g_k^2 d2E/dg_k^2 exactly: the replicated-data trick of
                         brute-force with a scalar t per copy, and a double backward pass (the copies
                         are independent, so d/dt of dE/dt is the Hessian's diagonal). Costs about as
                         much as brute force.
    taylor2-mean/-median taylor2 with the paper's outlier thresholding.
    l1/l2-in             norm of the unit's weights (Linear row / Conv2d filter), inputs from removed
                         units of other groups masked out.
    l1/l2-out            norm of the consumers' weights fed by the unit (found by the dependency
                         graph; after a flatten, the channel's whole block of columns).
    mean-activation, activation-variance, apoz
                         of the unit's un-gated output, over samples (and positions, for channels).

Compensation (mean / lstsq) exists only for the MLP class.
"""
from __future__ import annotations

import torch

from .. import losses
from ..gating import GatedModel
from . import mark_removed, register_generic
from .brute_force import error_now
from .taylor import threshold


def _chunks(model, N: int, C: int):
    """(rows of data, candidates) per forward pass so that rows x candidates <= model.batch_rows."""
    n = min(N, model.batch_rows)
    return n, max(1, min(C, model.batch_rows // n))


def _replicated(model, X, T, layer, units, gate_rows):
    """For candidates `units` of `layer`: yield (z, T repeated, slice of the candidates, n, c) per
    forward pass over n data rows copied once per candidate (c of them), copy k with the gate row
    gate_rows(candidates)[k] (each (K,)); z is (c * n, n_out), candidate-major."""
    N, C = X.shape[0], units.numel()
    n_step, c_step = _chunks(model, N, C)
    for i in range(0, N, n_step):
        Xb = X[i:i + n_step]
        n = Xb.shape[0]
        for j in range(0, C, c_step):
            cs = slice(j, j + c_step)
            G = gate_rows(units[cs])                                       # (c, K)
            c = G.shape[0]
            Xr = Xb.repeat(c, *([1] * (X.ndim - 1)))                      # (c * n, ...)
            with model.overriding({layer: G.repeat_interleave(n, 0)}):
                z = model(Xr)
            yield z, T[i:i + n_step].repeat(c, 1), cs, n, c


def _off_rows(g, units):
    G = g.detach().expand(units.numel(), g.numel()).clone()
    G[torch.arange(units.numel()), units] = 0.0
    return G


@torch.no_grad()
def errors_after_removal(model: GatedModel, X, T, loss, layer: int, units) -> torch.Tensor:
    """E with each of `units` of `layer` switched off, batched; (C,)."""
    units = torch.as_tensor(units, dtype=torch.long, device=X.device)
    out = torch.zeros(units.numel(), dtype=torch.float64, device=X.device)
    for z, Tr, cs, n, c in _replicated(model, X, T, layer, units, lambda u: _off_rows(model.gates[layer], u)):
        out[cs] += losses.per_sample(z, Tr, model.output_activation, loss).view(c, n).sum(1)
    return out.to(model.gates[layer].dtype)


@torch.no_grad()
def _silent(model: GatedModel, X) -> list[torch.Tensor]:
    """Per group, True for units whose un-gated output is exactly 0 on every sample: their removal
    changes nothing, and saying so exactly keeps float rounding from ranking them."""
    peak = [torch.zeros_like(g) for g in model.gates]
    for l, a in _outputs(model, X):
        peak[l] = torch.maximum(peak[l], _per_unit(model, l, a.abs(), torch.amax))
    return [p == 0 for p in peak]


def _by_layer(model, X, T, loss, errors_fn):
    E0 = error_now(model, X, T, loss)
    silent = _silent(model, X)
    out = []
    for l, g in enumerate(model.gates):
        s = torch.zeros_like(g)
        units = torch.nonzero((g != 0) & ~silent[l]).flatten()
        if units.numel():
            s[units] = errors_fn(l, units) - E0
        out.append(s)
    return mark_removed(model, out)


@register_generic("brute-force")
def brute_force(model, X, T, loss):
    return _by_layer(model, X, T, loss, lambda l, u: errors_after_removal(model, X, T, loss, l, u))


@register_generic("brute-force-literal")
def brute_force_literal(model, X, T, loss):
    def errors(l, units):
        out = []
        for u in units.tolist():
            old = float(model.gates[l][u])
            model.set_gate(l, u, 0.0)
            out.append(losses.total(model.logits(X), T, model.output_activation, loss))
            model.set_gate(l, u, old)
        return torch.stack(out)
    return _by_layer(model, X, T, loss, errors)


# ---- autograd on the gates ------------------------------------------------------------
def _first_and_gn(model: GatedModel, X, T, loss, second: bool):
    """dE/dg per group, and (second=True) the Gauss-Newton diagonal sum_n J^T H J per group."""
    grads = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    gns = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    b = model.batch_rows
    for i in range(0, X.shape[0], b):
        Xb, Tb = X[i:i + b], T[i:i + b]
        n = Xb.shape[0]
        # per-sample gate rows, so gradients stay per sample: dz_n/dG_n = dz_n/dg
        G = [g.detach().expand(n, g.numel()).clone().requires_grad_() for g in model.gates]
        with torch.enable_grad(), model.overriding(dict(enumerate(G))):
            z = model(Xb)                                                           # (n, m)
            E = losses.total(z, Tb, model.output_activation, loss)
            for l, d in enumerate(torch.autograd.grad(E, G, retain_graph=second)):
                grads[l] += d.sum(0).double()
            if second:
                H = _output_hessian(z.detach(), Tb, model.output_activation, loss)  # (n, m, m)
                m = z.shape[1]
                J = [torch.autograd.grad(z[:, c].sum(), G, retain_graph=c < m - 1) for c in range(m)]
                for l in range(len(G)):
                    Jl = torch.stack([J[c][l] for c in range(m)]).double()          # (m, n, K)
                    gns[l] += torch.einsum("cnk,ncd,dnk->k", Jl, H.double(), Jl)
    dt = model.gates[0].dtype
    return [d.to(dt) for d in grads], [h.to(dt) for h in gns]


def _output_hessian(z, T, output, loss):
    """d2E_n/dz_n^2 per sample, (n, m, m), by autograd on the per-sample loss."""
    from torch.func import hessian, vmap
    return vmap(hessian(lambda zi, ti: losses.per_sample(zi[None], ti[None], output, loss).sum()))(z, T)


def _taylor(model, X, T, loss, second: bool):
    d, gn = _first_and_gn(model, X, T, loss, second)
    out = []
    for g, dl, hl in zip(model.gates, d, gn):
        s = -g * dl
        if second:
            s = s + 0.5 * g * g * hl
        out.append(s)
    return mark_removed(model, out)


@register_generic("taylor1")
def taylor1(model, X, T, loss):
    return _taylor(model, X, T, loss, second=False)


@register_generic("taylor1-abs")
def taylor1_abs(model, X, T, loss):
    return [s.abs() for s in _taylor(model, X, T, loss, second=False)]


@register_generic("taylor2")
def taylor2(model, X, T, loss):
    return _taylor(model, X, T, loss, second=True)


@register_generic("taylor2-mean")
def taylor2_mean(model, X, T, loss):
    return threshold(taylor2(model, X, T, loss), "mean")


@register_generic("taylor2-median")
def taylor2_median(model, X, T, loss):
    return threshold(taylor2(model, X, T, loss), "median")


def _exact_taylor2(model, X, T, loss, l, units):
    """-g_u dE/dg_u + 1/2 g_u^2 d2E/dg_u^2 for each of `units` of group l, exactly; (C,)."""
    g = model.gates[l].detach()
    d1 = torch.zeros(units.numel(), dtype=torch.float64, device=g.device)
    d2 = torch.zeros_like(d1)
    leaf = []

    def rows(u):
        # gate row of copy c: g + t_c d_c with d_c = -g_u e_u, so t_c = 1 is the removal
        t = torch.zeros(u.numel(), dtype=g.dtype, device=g.device, requires_grad=True)
        leaf[:] = [t]
        D = torch.zeros(u.numel(), g.numel(), dtype=g.dtype, device=g.device)
        D[torch.arange(u.numel()), u] = -g[u]
        return g + t[:, None] * D
    with torch.enable_grad():
        for z, Tr, cs, n, c in _replicated(model, X, T, l, units, rows):
            E = losses.per_sample(z, Tr, model.output_activation, loss).sum()
            (first,) = torch.autograd.grad(E, leaf[0], create_graph=True)
            # the copies are independent, so d/dt of sum(dE/dt) is the Hessian's diagonal in t
            (sec,) = torch.autograd.grad(first.sum(), leaf[0])
            d1[cs] += first.detach().double()
            d2[cs] += sec.double()
    return (d1 + 0.5 * d2).to(g.dtype)


@register_generic("taylor2-exact")
def taylor2_exact(model, X, T, loss):
    out = []
    for l, g in enumerate(model.gates):
        s = torch.full_like(g, float("nan"))
        units = torch.nonzero(g != 0).flatten()
        if units.numel():
            s[units] = _exact_taylor2(model, X, T, loss, l, units)
        out.append(s)
    return out


# ---- statistics of the units' outputs -------------------------------------------------
def _per_unit(model, l, a, reduce):
    """Reduce a unit's output tensor to (K,) over every dim but its channel dim."""
    dim = model.units[l].channel_dim % a.ndim
    return reduce(a, dim=[d for d in range(a.ndim) if d != dim])


@torch.no_grad()
def _outputs(model: GatedModel, X):
    """Yield (group, un-gated output of its units on a batch) over all of X."""
    got = []
    handles = []
    mods = dict(model.model.named_modules())
    for l, u in enumerate(model.units):
        # a pre-hook-free way to see the un-gated output: hook the gate module before the gate hook runs
        handles.append(mods[u.gate_at].register_forward_hook(lambda m, i, o, l=l: got.append((l, o.detach())),
                                                             prepend=True))
    try:
        b = model.batch_rows
        for i in range(0, X.shape[0], b):
            got.clear()
            model.model(X[i:i + b])
            yield from list(got)
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _moments(model, X):
    K = [g.numel() for g in model.gates]
    acc = {k: [torch.zeros(n, dtype=torch.float64, device=X.device) for n in K] for k in ("abs", "s", "s2", "nz", "n")}
    for l, a in _outputs(model, X):
        a = a.double()
        acc["abs"][l] += _per_unit(model, l, a.abs(), torch.sum)
        acc["s"][l] += _per_unit(model, l, a, torch.sum)
        acc["s2"][l] += _per_unit(model, l, a * a, torch.sum)
        acc["nz"][l] += _per_unit(model, l, (a != 0).double(), torch.sum)
        acc["n"][l] += a.numel() / a.shape[model.units[l].channel_dim]
    return acc


def _stat(model, X, fn):
    acc = _moments(model, X)
    dt = model.gates[0].dtype
    return mark_removed(model, [fn({k: v[l] for k, v in acc.items()}).to(dt) for l in range(len(model.gates))])


@register_generic("mean-activation")
def mean_activation(model, X, T, loss):
    return _stat(model, X, lambda a: a["abs"] / a["n"])


@register_generic("activation-variance")
def activation_variance(model, X, T, loss):
    return _stat(model, X, lambda a: (a["s2"] / a["n"] - (a["s"] / a["n"]) ** 2).clamp_min(0))


@register_generic("apoz")
def apoz(model, X, T, loss):
    return _stat(model, X, lambda a: a["nz"] / a["n"])


# ---- weight norms -----------------------------------------------------------------------
def _plans(model: GatedModel):
    """Per group, per unit: {consumer module: its input indices fed by that unit} (cached)."""
    plans = model.__dict__.get("_plans")
    if plans is None:
        from ..surgery import dependency_graph, group_of
        m = model.bare_copy().eval()
        graph = dependency_graph(m, torch.zeros(1, *model.input_shape, dtype=model.gates[0].dtype,
                                                device=model.gates[0].device))
        plans = [[group_of(graph, m, u, [j]) for j in range(u.size)] for u in model.units]
        model.__dict__["_plans"] = plans
    return plans


def _weight(mod):
    W = mod.weight.detach()
    return W.reshape(W.shape[0], W.shape[1], -1)                   # (out, in, kernel positions)


def _masked_inputs(model, plans):
    """{module name: bool (in_features/in_channels,) True where the input comes from a live unit}."""
    mods = dict(model.model.named_modules())
    masks = {}
    for l, g in enumerate(model.gates):
        for j in torch.nonzero(g == 0).flatten().tolist():
            for name, idx in plans[l][j].items():
                if name not in masks:
                    masks[name] = torch.ones(_weight(mods[name]).shape[1], dtype=torch.bool, device=g.device)
                masks[name][idx] = False
    return masks


def _norms(model, X, T, loss, p: int, direction: str):
    plans = _plans(model)
    mods = dict(model.model.named_modules())
    masks = _masked_inputs(model, plans)
    out = []
    for l, (u, g) in enumerate(zip(model.units, model.gates)):
        if direction == "in":
            W = _weight(mods[u.name]).abs().pow(p)
            if u.name in masks:
                W = W * masks[u.name][None, :, None]
            s = W.sum((1, 2))
        else:
            s = torch.zeros_like(g)
            own = {v.name: k for k, v in enumerate(model.units)}
            for j in range(u.size):
                for name, idx in plans[l][j].items():
                    W = _weight(mods[name])[:, idx].abs().pow(p)           # (out, |idx|, kernel)
                    if name in own:                                         # consumer rows already removed
                        W = W * (model.gates[own[name]] != 0)[:, None, None]
                    s[j] += W.sum()
        out.append(s.pow(1 / p).to(g.dtype))
    return mark_removed(model, out)


for _p in (1, 2):
    for _d in ("in", "out"):
        register_generic(f"l{_p}-{_d}")((lambda p, d: lambda model, X, T, loss: _norms(model, X, T, loss, p, d))(_p, _d))
