"""Derivatives of the error in the units' outputs, for the Taylor criteria.

Two sources, one per kind of gated model, both giving per group l the first derivative
sum_n o dE/do and an estimate of the second sum_n o^2 d2E/do^2:

* :func:`obd` (the MLP): dE/do exactly and d2E/do^2 by the paper's OBD-style *diagonal*
  back-propagation, in closed form:

      output:  d2E/dz^2 (closed form per activation and loss, see losses.py)
      hidden:  d2E/do_j^2 = sum_i d2E/dx_i^2 w_ij^2
               d2E/dx_j^2 = d2E/do_j^2 f'(x_j)^2 + dE/do_j f''(x_j)

* :func:`gauss_newton` (any gated model): dE/dg by autograd, and the Gauss-Newton diagonal
  sum_n J_n^T H_n J_n with J_n = dz_n/dg per sample (one backward pass per output) and H_n the
  loss's exact Hessian in the outputs. The exact d2E/dg^2 adds sum_i dE/dz_i d2z_i/dg^2, the
  curvature of the network itself, which is zero for piecewise-linear nets (ReLU, max-pool,
  BatchNorm in eval mode, residual additions).

* :func:`gauss_newton_sampled` (any gated model): the same Gauss-Newton diagonal in expectation, at
  one backward pass per batch and draw whatever the number of outputs and positions. The loss's
  Hessian in the outputs is written as an expectation E[a b^T] of random output vectors, so that
  E[(J^T a) (J^T b)] = J^T H J per sample, and J^T a is one vector-Jacobian product:

      cross-entropy (softmax or logits): H = s (diag p - p p^T) = E_{y~p}[s (p - e_y)(p - e_y)^T],
          a = b = sqrt(s) (p - e_y) with y drawn from the model's own prediction (s: the target's
          mass, 0 at ignored positions), the gradient of -log p_y (the true Fisher);
      cross-entropy (sigmoid outputs): H = diag(o (1 - o)), a = b = o - y with y_i ~ Bernoulli(o_i);
      SSE of identity outputs: H = I, a = b = v with v_i = +-1 (Rademacher);
      SSE of sigmoid / softmax outputs (H not positive semi-definite): a = v, b = H v (two passes).

  Positions of a sequence output draw independently, so their cross terms vanish in expectation
  and one product covers them all.
"""
from __future__ import annotations

import torch

from . import distributed as dist
from . import losses

#: samples per pass for a model that does not size its own (the MLP)
BATCH = 4096


@torch.no_grad()
def obd(model, cache, T, loss):
    """Per hidden layer of an MLP: dE_n/do (N, K_l) exact, and d2E_n/do^2 (N, K_l) by the OBD
    diagonal recursion, from its cached forward pass."""
    act = model.activation
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


def samples_per_pass(model) -> int:
    """Samples per pass of a gated model: a GatedModel's own ``batch_rows`` (sized from its trace,
    :func:`shrinknet.finding.rows_per_pass`), or :data:`BATCH` for the MLP."""
    return getattr(model, "batch_rows", None) or BATCH


def _per_sample(model, chunks, loss, keep_graph: bool):
    """Yield (gate rows G, outputs z, targets, dE_n/dg per sample and group) over the (X, T) pieces
    ``chunks``. Each sample gets its own gate row, so the gradient of the summed error in G_n is
    sample n's own: dE_n/dg."""
    for Xb, Tb in chunks:
        n = Tb.shape[0]
        G = [g.detach().expand(n, g.numel()).clone().requires_grad_() for g in model.gates]
        with torch.enable_grad():
            z = model.logits(Xb, G)                                                 # (n, ..., m)
            E = losses.error(z, Tb, model.output_activation, loss)
            grads = torch.autograd.grad(E, G, retain_graph=keep_graph)
            yield G, z, Tb, grads


def gauss_newton(model, chunks, loss, second: bool):
    """dE/dg per group, and (second=True) the Gauss-Newton diagonal sum_n J^T H J per group, for any
    gated model (through ``model.logits(X, gates)`` with per-sample gate rows), over the (X, T)
    pieces ``chunks`` (and every rank's)."""
    grads = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    gns = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    for G, z, Tb, d in _per_sample(model, chunks, loss, keep_graph=second):
        for l, dl in enumerate(d):
            grads[l] += dl.sum(0).double()
        if second:
            with torch.enable_grad():
                # outputs with positions (n, P, m): the loss is a sum over positions, so its Hessian is
                # block-diagonal and J^T H J sums over positions (one backward pass per position and output)
                n = Tb.shape[0]
                zs, Ts = z.reshape(n, -1, z.shape[-1]), Tb.reshape(n, -1, z.shape[-1])
                for p in range(zs.shape[1]):
                    _gauss_newton_add(gns, zs[:, p], Ts[:, p], G, model.output_activation, loss,
                                      last=p == zs.shape[1] - 1)
    dt = model.gates[0].dtype
    return [dist.sum_(d).to(dt) for d in grads], [dist.sum_(h).to(dt) for h in gns]


def fisher(model, chunks, loss):
    """sum_n (dE_n/dg)^2 per group: the diagonal of the empirical Fisher information in the gates
    (Kwon et al. 2022), for any gated model, over the (X, T) pieces ``chunks`` (and every rank's)."""
    F = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    for _, _, _, d in _per_sample(model, chunks, loss, keep_graph=False):
        for l, dl in enumerate(d):
            F[l] += dl.double().pow(2).sum(0)
    dt = model.gates[0].dtype
    return [dist.sum_(f).to(dt) for f in F]


def _seed(seed: int, *key: int) -> int:
    # one stream per (seed, step, rank, piece): the same draws on a rerun and after a resume
    import numpy as np
    return int(np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0] >> 1)


def _uniform(shape, gen, device, dtype):
    # drawn on the CPU (a CPU generator), so a GPU run draws what a CPU run does
    return torch.rand(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def sampled_cotangents(z, T, output, loss, gen):
    """Random (a, b), each shaped like the outputs z (n, ..., m), with E[a_n b_n^T] the Hessian of
    sample n's loss in its outputs at each position (see the module's docstring); b is None where it
    equals a. Draws from ``gen`` (a CPU torch.Generator)."""
    z = z.detach()
    if loss == "cross-entropy" and output == "sigmoid":
        o = torch.sigmoid(z)
        y = (_uniform(z.shape, gen, z.device, z.dtype) < o).to(z.dtype)
        return o - y, None
    if loss == "cross-entropy":
        p = torch.softmax(z, dim=-1)
        c = p.cumsum(-1)
        u = _uniform(z.shape[:-1] + (1,), gen, z.device, z.dtype) * c[..., -1:]
        y = torch.searchsorted(c.contiguous(), u.contiguous()).clamp_(max=z.shape[-1] - 1)   # inverse CDF
        a = p - torch.zeros_like(p).scatter_(-1, y, 1.0)
        return a * T.sum(-1, keepdim=True).clamp(min=0).sqrt(), None
    v = (_uniform(z.shape, gen, z.device, z.dtype) < 0.5).to(z.dtype) * 2 - 1
    if output == "identity":
        return v, None
    from torch.func import grad, jvp
    hv = jvp(grad(lambda zz: losses.error(zz, T, output, loss)), (z.contiguous(),), (v,))[1]
    return v, hv


def gauss_newton_sampled(model, chunks, loss, draws: int, seed: int, step: int):
    """dE/dg per group and an unbiased estimate of the Gauss-Newton diagonal sum_n J^T H J per group
    (the mean of ``draws`` draws), at 1 + draws backward passes per piece of ``chunks`` (two per draw
    for SSE of sigmoid / softmax outputs). Draws are seeded by (seed, step, rank, piece)."""
    import torch.distributed as td
    rank = td.get_rank() if td.is_available() and td.is_initialized() else 0
    grads = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    gns = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    for i, (G, z, Tb, d) in enumerate(_per_sample(model, chunks, loss, keep_graph=True)):
        for l, dl in enumerate(d):
            grads[l] += dl.sum(0).double()
        gen = torch.Generator().manual_seed(_seed(seed, step, rank, i))
        Tz = Tb.reshape(z.shape)
        with torch.enable_grad():
            for k in range(draws):
                a, b = sampled_cotangents(z, Tz, model.output_activation, loss, gen)
                last = k == draws - 1
                Ja = torch.autograd.grad(z, G, grad_outputs=a, retain_graph=not last or b is not None)
                Jb = Ja if b is None else torch.autograd.grad(z, G, grad_outputs=b, retain_graph=not last)
                for l in range(len(G)):
                    gns[l] += (Ja[l].double() * Jb[l].double()).sum(0) / draws
    dt = model.gates[0].dtype
    return [dist.sum_(d).to(dt) for d in grads], [dist.sum_(h).to(dt) for h in gns]


def backward_passes(model, out_shape, second: bool = True) -> int:
    """Backward passes :func:`gauss_newton` takes per piece of data: 1 for dE/dg, and with second
    one per output and position (fisher takes 1)."""
    n = 1
    for s in (out_shape or (1,)):
        n *= int(s)
    return 1 + n if second else 1


def _gauss_newton_add(gns, z, T, G, output, loss, last: bool) -> None:
    """gns[l] += sum_n J_n^T H_n J_n for outputs z (n, m) of the graph built on gate rows G."""
    H = output_hessian(z.detach(), T, output, loss)                                    # (n, m, m)
    m = z.shape[1]
    J = [torch.autograd.grad(z[:, c].sum(), G, retain_graph=not last or c < m - 1) for c in range(m)]
    for l in range(len(G)):
        Jl = torch.stack([J[c][l] for c in range(m)]).double()                           # (m, n, K)
        gns[l] += torch.einsum("cnk,ncd,dnk->k", Jl, H.double(), Jl)


def output_hessian(z, T, output, loss):
    """d2E_n/dz_n^2 per sample, (n, m, m), by autograd on the per-sample loss."""
    from torch.func import hessian, vmap
    return vmap(hessian(lambda zi, ti: losses.per_sample(zi[None], ti[None], output, loss).sum()))(z, T)
