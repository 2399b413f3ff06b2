"""Seeded, deterministic training on the CPU (or a given device).

    >>> from shrinknet.train import TrainConfig, train
    >>> history = train(model, X, T, TrainConfig(epochs=50, seed=0))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .. import _progress, losses
from .._validation import ShrinkNetError, check_choice, check_inputs, check_targets
from ..metrics import accuracy_of, has_classes
from ..models import MLP


@dataclass
class TrainConfig:
    """Mini-batch training; the loss is averaged over each batch.

    target_accuracy stops as soon as training accuracy reaches it (checked every epoch), for nets
    deliberately stopped short of convergence. ``patience`` (epochs) stops once the training loss has
    not fallen by more than the share ``stall`` of itself for that many epochs (the paper's "no
    longer able to make progress on the training set"); ``epochs`` is then the most it may take.
    """
    epochs: int = 100
    lr: float = 1e-2
    batch_size: int = 100
    optimizer: str = "adam"
    momentum: float = 0.9
    loss: str = "sse"
    seed: int = 0
    target_accuracy: float | None = None
    patience: int | None = None
    stall: float = 1e-3

    def to_dict(self) -> dict:
        return asdict(self)


def train(model: MLP, X, T, config: TrainConfig | None = None, progress: bool | None = None) -> list[dict]:
    """Train `model` in place; returns one {"epoch", "loss", "accuracy"} dict per epoch. ``progress``:
    a bar of the epochs, None (default) once training has run 2 s, True from the start, False never."""
    cfg = config or TrainConfig()
    check_choice(cfg.optimizer, ("adam", "sgd"), "optimizer")
    loss = losses.check_loss(cfg.loss)
    if cfg.epochs < 0 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise ShrinkNetError(f"train config: expected epochs >= 0, batch_size >= 1, lr > 0, got {cfg}")
    if cfg.patience is not None and (int(cfg.patience) != cfg.patience or cfg.patience < 1 or not cfg.stall >= 0):
        raise ShrinkNetError(f"patience: expected an integer >= 1 (epochs) and stall >= 0, got {cfg.patience}, "
                             f"{cfg.stall}")
    if cfg.target_accuracy is not None and not 0 < cfg.target_accuracy <= 1:
        raise ShrinkNetError(f"target_accuracy: expected a share in (0, 1], got {cfg.target_accuracy}")
    model.check_finite()
    p = next(model.parameters())
    X = check_inputs(X, model.sizes[0], p.dtype, p.device)
    T = check_targets(T, X.shape[0], model.sizes[-1], p.dtype, p.device)
    classes = has_classes(T)
    params = list(model.parameters())
    opt = (torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam"
           else torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in _progress.bar(range(cfg.epochs), desc="training", progress=progress, unit="epoch"):
        perm = torch.randperm(X.shape[0], generator=gen).to(X.device)
        for i in range(0, X.shape[0], cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            z = model.logits(X[idx])
            (losses.total(z, T[idx], model.output_activation, loss) / len(idx)).backward()
            opt.step()
        with torch.no_grad():
            z = model.logits(X)
            E = float(losses.total(z, T, model.output_activation, loss))
            acc = accuracy_of(model(X), T, model.output_activation) if classes else None
        history.append({"epoch": epoch + 1, "loss": E, "accuracy": acc})
        if not torch.isfinite(torch.tensor(E)):
            raise ShrinkNetError(f"training diverged at epoch {epoch + 1} (loss {E}); lower the learning rate")
        if cfg.target_accuracy is not None and acc is not None and acc >= cfg.target_accuracy:
            break
        if cfg.patience is not None and _stalled(history, int(cfg.patience), cfg.stall):
            break
    return history


def _stalled(history: list[dict], patience: int, stall: float) -> bool:
    """Whether the best loss of the last ``patience`` epochs is not ``stall`` (a share) below the best before."""
    if len(history) <= patience:
        return False
    before = min(h["loss"] for h in history[:-patience])
    return min(h["loss"] for h in history[-patience:]) > before * (1 - stall)


def train_classifier(model: torch.nn.Module, X, y, epochs: int = 5, lr: float = 1e-3, batch_size: int = 128,
                     seed: int = 0, progress: bool | None = None) -> list[dict]:
    """Train any nn.Module that outputs class logits, in place, with Adam and cross-entropy (seeded
    shuffling; seed torch yourself for the initial weights). Returns one {"epoch", "loss"} per epoch.

    X: (N, ...) inputs as the model takes them; y: (N,) integer labels or (N, n_classes) one-hot rows."""
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ShrinkNetError(f"train: expected epochs >= 0, batch_size >= 1, lr > 0, got {epochs}, {batch_size}, {lr}")
    p = next(model.parameters())
    X = torch.as_tensor(X, dtype=p.dtype, device=p.device)
    y = torch.as_tensor(y, device=p.device)
    y = y.argmax(1) if y.ndim == 2 else y.long()
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ShrinkNetError(f"train: expected as many labels as samples (> 0), got {y.shape[0]} and {X.shape[0]}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in _progress.bar(range(epochs), desc="training", progress=progress, unit="epoch"):
        perm = torch.randperm(X.shape[0], generator=gen).to(X.device)
        total = 0.0
        for i in range(0, X.shape[0], batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch + 1, "loss": total / X.shape[0]})
    model.eval()
    return history
