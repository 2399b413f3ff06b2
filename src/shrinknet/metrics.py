"""Error and accuracy from a model's outputs (the user-facing :func:`shrinknet.evaluate` is in context.py)."""
from __future__ import annotations

import torch

from . import losses
from .activations import apply_output
from .gating import rows_per_pass
from .oracle import kernel


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
def error_and_accuracy(z: torch.Tensor, T: torch.Tensor, output: str, loss: str, classes: bool):
    """(E, accuracy or None) of outputs z (before the output activation) against targets T.

    On the CPU both come from one compiled pass (kernel.measure; E up to float rounding, the
    count exactly torch's argmax), which the pruning loop runs after every removal."""
    fast = kernel.measure(z, T, loss, output)
    E = fast[0] if fast is not None else float(losses.total(z, T, output, loss))
    if not classes:
        return E, None
    if fast is not None and T.shape[1] > 1:
        return E, fast[1] / T.shape[0]
    # every output activation keeps the order of a row, so argmax needs no activation
    return E, accuracy_of(z if T.shape[1] > 1 else apply_output(z, output), T, output)


@torch.no_grad()
def outputs(model, X: torch.Tensor) -> torch.Tensor:
    """model(X) in eval mode, in passes sized to the model's activations; every submodule's own mode
    is put back afterwards (not just the top one's: a user may have frozen a BatchNorm)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        b = rows_per_pass(model, X[:1])
        return torch.cat([model(X[i:i + b]) for i in range(0, X.shape[0], b)])
    finally:
        for m, was in modes:
            m.training = was
