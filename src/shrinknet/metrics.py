"""Error and accuracy of a (gated) model on a data set."""
from __future__ import annotations

import torch

from . import losses
from .oracle import kernel as fused
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
def error_and_accuracy(z: torch.Tensor, T: torch.Tensor, output: str, loss: str, classes: bool):
    """(E, accuracy or None) of outputs z (before the output activation) against targets T.

    On the CPU both come from one compiled pass (fused.measure; E up to float rounding, the
    count exactly torch's argmax), which the pruning loop runs after every removal."""
    fast = fused.measure(z, T, loss, output)
    E = fast[0] if fast is not None else float(losses.total(z, T, output, loss))
    if not classes:
        return E, None
    if fast is not None and T.shape[1] > 1:
        return E, fast[1] / T.shape[0]
    # every output activation keeps the order of a row, so argmax needs no activation
    return E, accuracy_of(z if T.shape[1] > 1 else apply_output(z, output), T, output)


@torch.no_grad()
def measure(model, X: torch.Tensor, T: torch.Tensor, loss: str, classes: bool):
    """(E, accuracy or None) of `model` with its current gates."""
    return error_and_accuracy(model.cache(X).z, T, model.output_activation, loss, classes)


@torch.no_grad()
def outputs(model, X: torch.Tensor) -> torch.Tensor:
    """model(X) in eval mode, in passes sized to the model's activations; its mode is restored."""
    from .gating import rows_per_pass
    was = model.training
    model.eval()
    try:
        b = rows_per_pass(model, X[:1])
        return torch.cat([model(X[i:i + b]) for i in range(0, X.shape[0], b)])
    finally:
        model.train(was)


def evaluate(model, X, T, loss: str = "sse", *, output_activation: str | None = None) -> dict:
    """Error (summed over samples) and, for class targets, accuracy.

    ``model`` is an MLP, or any nn.Module whose output the loss reads through ``output_activation``
    (default identity: logits). Returns ``{"error": float, "accuracy": float or None, "n": int}``.
    """
    from .pruning import is_generic
    if is_generic(model):
        own = getattr(model, "output_activation", None)           # a GatedModel knows its own
        return _evaluate_any(model, X, T, losses.check_loss(loss), output_activation or own or "identity")
    m = as_mlp(model)
    m.check_finite()
    p = next(m.parameters())
    X = check_inputs(X, m.sizes[0], p.dtype, p.device)
    T = check_targets(T, X.shape[0], m.sizes[-1], p.dtype, p.device)
    E, acc = measure(m, X, T, losses.check_loss(loss), has_classes(T))
    return {"error": E, "accuracy": acc, "n": int(X.shape[0])}


@torch.no_grad()
def _evaluate_any(model, X, T, loss: str, output: str) -> dict:
    from .activations import output_activation as check_output
    from ._validation import ShrinkNetError, as_tensor
    output = check_output(output)
    p = next(iter(model.parameters()), None)
    X = as_tensor(X, "X", p.dtype if p is not None else torch.float32, p.device if p is not None else None)
    try:
        z = outputs(model, X)
    except RuntimeError as e:
        raise ShrinkNetError(f"X: the model cannot take inputs of shape {tuple(X.shape)} ({e})") from None
    if z.ndim != 2:
        raise ShrinkNetError(f"model: expected outputs of shape (N, n_out), got {tuple(z.shape)}")
    T = check_targets(T, X.shape[0], z.shape[1], z.dtype, z.device)
    E, acc = error_and_accuracy(z, T, output, loss, has_classes(T))
    return {"error": E, "accuracy": acc, "n": int(X.shape[0])}
