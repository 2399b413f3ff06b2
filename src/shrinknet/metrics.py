"""Error and accuracy of a (gated) model on a data set."""
from __future__ import annotations

import torch

from . import losses
from .activations import apply_output
from ._validation import check_inputs, check_targets
from .models import as_mlp


def has_classes(T: torch.Tensor) -> bool:
    """One-hot rows (n_out > 1), or 0/1 targets of a single output."""
    if T.shape[1] == 1:
        return bool(((T == 0) | (T == 1)).all())
    return bool(((T == 0) | (T == 1)).all() and (T.sum(1) == 1).all())


@torch.no_grad()
def accuracy_of(o: torch.Tensor, T: torch.Tensor, output: str) -> float:
    """Share of samples classified right: argmax for several outputs, o > 0.5 (or z > 0 for
    identity outputs) for one."""
    if T.shape[1] == 1:
        cut = 0.0 if output == "identity" else 0.5
        return float(((o[:, 0] > cut) == (T[:, 0] > 0.5)).to(torch.float64).mean())
    return float((o.argmax(1) == T.argmax(1)).to(torch.float64).mean())


@torch.no_grad()
def measure(model, X: torch.Tensor, T: torch.Tensor, loss: str, classes: bool):
    """(E, accuracy or None) of `model` with its current gates."""
    z = model.cache(X).z
    E = float(losses.total(z, T, model.output_activation, loss))
    acc = accuracy_of(apply_output(z, model.output_activation), T, model.output_activation) if classes else None
    return E, acc


def evaluate(model, X, T, loss: str = "sse") -> dict:
    """Error (summed over samples) and, for class targets, accuracy.

    Returns ``{"error": float, "accuracy": float or None, "n": int}``.
    """
    m = as_mlp(model)
    m.check_finite()
    p = next(m.parameters())
    X = check_inputs(X, m.sizes[0], p.dtype, p.device)
    T = check_targets(T, X.shape[0], m.sizes[-1], p.dtype, p.device)
    E, acc = measure(m, X, T, losses.check_loss(loss), has_classes(T))
    return {"error": E, "accuracy": acc, "n": int(X.shape[0])}
