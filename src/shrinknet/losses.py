"""Losses, summed over samples and outputs, with their derivatives at the output layer.

``sse``  E = 1/2 sum_n sum_i (o_ni - t_ni)^2, o = output activation of z (the paper's).
``cross-entropy``  softmax or identity output: -sum t log softmax(z) (identity outputs are
read as logits, as torch.nn.CrossEntropyLoss does); sigmoid output: binary cross-entropy
per output, -[t log o + (1-t) log(1-o)].

``output_derivatives`` gives dE/dz and the *diagonal* d2E/dz^2 per sample, in closed
form; the tests check both against autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validation import check_choice
from .activations import apply_output

LOSSES = ("sse", "cross-entropy")


def check_loss(name: str) -> str:
    return check_choice(name, LOSSES, "loss")


def per_sample(z: torch.Tensor, T: torch.Tensor, output: str, loss: str) -> torch.Tensor:
    """Loss of each sample, summed over outputs. z: (..., n_out), T broadcastable -> (...)."""
    if loss == "sse":
        return 0.5 * (apply_output(z, output) - T).pow(2).sum(-1)
    if output == "sigmoid":
        # softplus(z) - t z  ==  binary cross-entropy with logits, stable for large |z|
        return (F.softplus(z) - T * z).sum(-1)
    return -(T * torch.log_softmax(z, dim=-1)).sum(-1)


def per_row(z: torch.Tensor, T: torch.Tensor, output: str, loss: str) -> torch.Tensor:
    """Loss of each sample (row of dim 0), summed over all its outputs: z (N, ..., n_out) -> (N,)
    (a sequence model's output (N, positions, classes) sums over positions)."""
    e = per_sample(z, T, output, loss)
    return e if e.ndim == 1 else e.flatten(1).sum(1)


def error(z: torch.Tensor, T: torch.Tensor, output: str, loss: str) -> torch.Tensor:
    """E summed over every sample and output (a 0-d tensor)."""
    return per_sample(z, T, output, loss).sum()


def total(z: torch.Tensor, T: torch.Tensor, output: str, loss: str) -> torch.Tensor:
    """E summed over the sample axis (the first one): z (N, ..., n_out) -> (...)."""
    return per_sample(z, T, output, loss).sum(0)


def total_(z: torch.Tensor, T: torch.Tensor, output: str, loss: str) -> torch.Tensor:
    """:func:`total`, allowed to overwrite z (saves memory passes in the oracle's inner loop)."""
    if loss != "sse" or output == "softmax":
        return total(z, T, output, loss)
    o = z.sigmoid_() if output == "sigmoid" else z
    o.sub_(T)
    return 0.5 * o.mul_(o).sum(dim=(0, -1))


def output_derivatives(z: torch.Tensor, T: torch.Tensor, output: str, loss: str):
    """dE_n/dz_ni and d2E_n/dz_ni^2 (diagonal only), both (N, n_out)."""
    if loss == "sse":
        o = apply_output(z, output)
        g = o - T  # dE/do
        if output == "identity":
            return g, torch.ones_like(z)
        if output == "sigmoid":
            s1 = o * (1 - o)
            s2 = s1 * (1 - 2 * o)
            return g * s1, s1 * s1 + g * s2
        # softmax: dp_i/dz_k = p_i (d_ik - p_k)
        p = o
        G1 = (g * p).sum(-1, keepdim=True)          # sum_i g_i p_i
        S2 = (p * p).sum(-1, keepdim=True)          # sum_i p_i^2
        d1 = p * (g - G1)
        # sum_i (dp_i/dz_k)^2 = p_k^2 [(1-p_k)^2 + S2 - p_k^2]
        jac_sq = p * p * ((1 - p) ** 2 + S2 - p * p)
        # sum_i g_i d2p_i/dz_k^2, with d2p_i/dz_k^2 = p_i (d_ik - p_k)^2 - p_i p_k (1 - p_k)
        curv = g * p * (1 - p) ** 2 + p * p * (G1 - g * p) - p * (1 - p) * G1
        return d1, jac_sq + curv
    if output == "sigmoid":
        o = torch.sigmoid(z)
        return o - T, o * (1 - o)
    p = torch.softmax(z, dim=-1)
    s = T.sum(-1, keepdim=True)
    return p * s - T, p * (1 - p) * s


def directional(z: torch.Tensor, T: torch.Tensor, output: str, loss: str, dz: torch.Tensor, ddz: torch.Tensor):
    """First and second derivative of the per-sample loss along a path z(t) with z(0) = z,
    z'(0) = dz, z''(0) = ddz: (grad . dz, dz^T H dz + grad . ddz), each summed over outputs.

    z, T: (n, 1, n_out) (broadcast over the candidates); dz, ddz: (n, c, n_out).
    """
    g1, g2 = output_derivatives(z, T, output, loss)     # dE/dz and the Hessian's diagonal
    first = (g1 * dz).sum(-1)
    coupled = output == "softmax" or (output == "identity" and loss == "cross-entropy")
    if not coupled:                                      # elementwise outputs: H is diagonal
        return first, (g2 * dz * dz + g1 * ddz).sum(-1)
    p = torch.softmax(z, dim=-1)
    pdz = (p * dz).sum(-1, keepdim=True)                 # p . dz
    var = (p * dz * dz).sum(-1, keepdim=True) - pdz * pdz  # p . dz^2 - (p . dz)^2
    if loss == "cross-entropy":                          # H = s (diag p - p p^T)
        quad = T.sum(-1, keepdim=True) * var
    else:                                                # SSE of softmax outputs: J^T J + sum_i g_i Hess(p_i)
        a = dz - pdz                                     # dp_i = p_i a_i;  d2p_i = p_i (a_i^2 - var)
        quad = ((p * a) ** 2).sum(-1, keepdim=True) + ((p - T) * p * (a * a - var)).sum(-1, keepdim=True)
    return first, quad.squeeze(-1) + (g1 * ddz).sum(-1)
