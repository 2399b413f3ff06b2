"""Error and accuracy from a model's outputs (the user-facing :func:`shrinknet.evaluate` is in context.py)."""
from __future__ import annotations

import torch

from . import inputs as batch
from . import losses
from .activations import apply_output
from .finding import plain_attention, rows_per_pass
from .oracle import kernel


def _rows(z: torch.Tensor, T: torch.Tensor):
    """Outputs with positions (N, ..., n_out) as one row per position, without ignored positions
    (all-zero target rows)."""
    if T.ndim <= 2:
        return z, T
    z, T = z.reshape(-1, T.shape[-1]), T.reshape(-1, T.shape[-1])
    live = T.sum(1) != 0
    return (z, T) if bool(live.all()) else (z[live], T[live])


def has_classes(T: torch.Tensor) -> bool:
    """One-hot rows (n_out > 1), or 0/1 targets of a single output (per position, for outputs with
    positions, where all-zero rows are ignored positions)."""
    _, T = _rows(T, T)
    if T.shape[1] == 1:
        return bool(((T == 0) | (T == 1)).all())
    return bool(((T == 0) | (T == 1)).all() and (T.sum(1) == 1).all())


@torch.no_grad()
def accuracy_of(o: torch.Tensor, T: torch.Tensor, output: str) -> float:
    """Share of samples (or of labelled positions) classified right: argmax for several outputs,
    o > 0.5 (or z > 0 for identity outputs) for one."""
    o, T = _rows(o, T)
    if T.shape[1] == 1:
        cut = 0.0 if output == "identity" else 0.5
        return float(((o[:, 0] > cut) == (T[:, 0] > 0.5)).to(torch.float64).mean())
    return float((o.argmax(1) == T.argmax(1)).to(torch.float64).mean())


@torch.no_grad()
def error_and_accuracy(z: torch.Tensor, T: torch.Tensor, output: str, loss: str, classes: bool):
    """(E, accuracy or None) of outputs z (before the output activation) against targets T.

    On the CPU both come from one compiled pass (kernel.measure; E up to float rounding, the
    count exactly torch's argmax), which the pruning loop runs after every removal."""
    if T.ndim > 2:
        E = float(losses.error(z, T, output, loss))
        return E, (accuracy_of(z, T, output) if classes else None)
    fast = kernel.measure(z, T, loss, output)
    E = fast[0] if fast is not None else float(losses.total(z, T, output, loss))
    if not classes:
        return E, None
    if fast is not None and T.shape[1] > 1:
        return E, fast[1] / T.shape[0]
    # every output activation keeps the order of a row, so argmax needs no activation
    return E, accuracy_of(z if T.shape[1] > 1 else apply_output(z, output), T, output)


@torch.no_grad()
def outputs(model, X) -> torch.Tensor:
    """model(X) in eval mode, in passes sized to the model's activations; every submodule's own mode
    is put back afterwards (not just the top one's: a user may have frozen a BatchNorm)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        b = rows_per_pass(model, batch.take(X, slice(0, 1)))
        with plain_attention():
            return torch.cat([batch.logits_of(batch.call(model, batch.take(X, slice(i, i + b))))
                              for i in range(0, batch.rows(X), b)])
    finally:
        for m, was in modes:
            m.training = was
