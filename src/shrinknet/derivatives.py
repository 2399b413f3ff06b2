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
"""
from __future__ import annotations

import torch

from . import losses


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


def gauss_newton(model, X, T, loss, second: bool):
    """dE/dg per group, and (second=True) the Gauss-Newton diagonal sum_n J^T H J per group, for any
    gated model (through ``model.logits(X, gates)`` with per-sample gate rows)."""
    grads = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    gns = [torch.zeros_like(g, dtype=torch.float64) for g in model.gates]
    b = model.batch_rows
    for i in range(0, X.shape[0], b):
        Xb, Tb = X[i:i + b], T[i:i + b]
        n = Xb.shape[0]
        # per-sample gate rows, so gradients stay per sample: dz_n/dG_n = dz_n/dg
        G = [g.detach().expand(n, g.numel()).clone().requires_grad_() for g in model.gates]
        with torch.enable_grad():
            z = model.logits(Xb, G)                                                 # (n, m)
            E = losses.total(z, Tb, model.output_activation, loss)
            for l, d in enumerate(torch.autograd.grad(E, G, retain_graph=second)):
                grads[l] += d.sum(0).double()
            if second:
                H = output_hessian(z.detach(), Tb, model.output_activation, loss)   # (n, m, m)
                m = z.shape[1]
                J = [torch.autograd.grad(z[:, c].sum(), G, retain_graph=c < m - 1) for c in range(m)]
                for l in range(len(G)):
                    Jl = torch.stack([J[c][l] for c in range(m)]).double()          # (m, n, K)
                    gns[l] += torch.einsum("cnk,ncd,dnk->k", Jl, H.double(), Jl)
    dt = model.gates[0].dtype
    return [d.to(dt) for d in grads], [h.to(dt) for h in gns]


def output_hessian(z, T, output, loss):
    """d2E_n/dz_n^2 per sample, (n, m, m), by autograd on the per-sample loss."""
    from torch.func import hessian, vmap
    return vmap(hessian(lambda zi, ti: losses.per_sample(zi[None], ti[None], output, loss).sum()))(z, T)
