"""A tiny Hugging Face ViT on Fashion-MNIST: make, train (or load from the cache), evaluate.

    python examples/vit_fashion.py               # trains ~1.5 min on 1 CPU thread (then reuses the cache), prunes ~2.5 min
    python examples/vit_fashion.py --quick       # about 20 s: 4,000 images, 2 epochs, a fifth of the units

Then it prunes FFN neurons and attention heads without retraining (examples/prune_transformer.py):
by the Fisher criterion on 512 training images until their accuracy would drop by more than a
point, shrinks the model, prints test accuracy, parameters, FLOPs and latency before and after, and
compares criteria with the exact oracle over its first removals.

The model is ``transformers.ViTForImageClassification`` built from a ``ViTConfig`` with random
weights (nothing is downloaded): 28x28 one-channel images cut into 16 patches of 7x7, a CLS token,
4 encoder layers of width 64 with 4 heads and an MLP of 128, a linear head over 10 classes: 139k
parameters. It trains with AdamW (seeded, fixed batch order, one thread) on the 60,000 Fashion-MNIST
training images and is tested on the 10,000 test images; the full run reaches 0.87 test
accuracy. The trained weights go to ``--cache`` as a safetensors file whose name carries a hash of
the configuration, the data size and the training settings, so a rerun with the same ones loads it.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``), read by :func:`shrinknet.paper.data.fashion_mnist`.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ViTConfig, ViTForImageClassification

from prune_transformer import parse, parser, prune_and_report, stop_of
from shrinknet.paper.data import fashion_mnist

MEAN, STD = 0.2860, 0.3530          # Fashion-MNIST's training pixel mean and standard deviation


@dataclass
class Config:
    # model
    image_size: int = 28
    patch_size: int = 7
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 128
    # data and training
    n_train: int = 60_000
    n_test: int = 10_000
    epochs: int = 4
    lr: float = 2e-3
    batch_size: int = 128
    weight_decay: float = 0.05


QUICK = dict(n_train=4_000, n_test=1_000, epochs=2)


def make_vit(seed: int = 0, cfg: Config = Config()) -> ViTForImageClassification:
    """A randomly initialised ViT (seeded), in eval mode."""
    torch.manual_seed(seed)
    config = ViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=1,
                       hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                       num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                       num_labels=10, attn_implementation="eager")
    return ViTForImageClassification(config).eval()


def load_data(n_train: int = 60_000, n_test: int = 10_000):
    """Fashion-MNIST as ``(X_train, y_train, X_test, y_test)``: X (N, 1, 28, 28) float32, standardised
    with the training set's mean and std; y long. The first n_train / n_test images of the official
    split (both splits are already shuffled)."""
    d = fashion_mnist()
    X = lambda a, n: ((torch.as_tensor(a[:n]) - MEAN) / STD).reshape(-1, 1, 28, 28).float()  # noqa: E731
    y = lambda a, n: torch.as_tensor(a[:n], dtype=torch.long)  # noqa: E731
    return X(d.X_train, n_train), y(d.y_train, n_train), X(d.X_test, n_test), y(d.y_test, n_test)


def train(model, X, y, epochs: int = 4, lr: float = 2e-3, seed: int = 0, threads: int = 1,
          batch_size: int = 128, weight_decay: float = 0.05, log_every: int = 0) -> list[float]:
    """AdamW with a linear warm-up (first 5% of steps) and cosine decay; the batch order is a seeded
    permutation per epoch, so the same arguments give the same weights. Returns each epoch's mean
    training loss; leaves the model in eval mode."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(X) + batch_size - 1) // batch_size)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, steps - warm))))
    model.train()
    losses = []
    for epoch in range(epochs):
        order, total = torch.randperm(len(X), generator=g), 0.0
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(pixel_values=X[idx]).logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(X))
        if log_every and (epoch + 1) % log_every == 0:
            print(f"  epoch {epoch + 1}/{epochs}: training loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model, X, y, batch_size: int = 1000) -> float:
    model.eval()
    right = sum((model(pixel_values=X[i:i + batch_size]).logits.argmax(1) == y[i:i + batch_size]).sum().item()
                for i in range(0, len(X), batch_size))
    return right / len(X)


def cache_file(cache: str | Path, cfg: Config, seed: int) -> Path:
    key = hashlib.sha256(json.dumps({**asdict(cfg), "seed": seed}, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache) / f"vit_fashion-seed{seed}-{key}.safetensors"


def load_or_train(cfg: Config, seed: int, cache: str | Path, threads: int = 1, data=None):
    """The trained model and the seconds spent training (0.0 when it came from the cache)."""
    torch.set_num_threads(threads)
    model, path = make_vit(seed, cfg), cache_file(cache, cfg, seed)
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model, 0.0
    Xtr, ytr = (data or load_data(cfg.n_train, cfg.n_test))[:2]
    t = time.perf_counter()
    train(model, Xtr, ytr, cfg.epochs, cfg.lr, seed, threads, cfg.batch_size, cfg.weight_decay, log_every=1)
    seconds = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(asdict(cfg)), "seed": str(seed), "train_seconds": f"{seconds:.1f}"})
    return model, seconds


def main(argv=None) -> dict:
    a = parse(parser(__doc__, QUICK, "the weights and the batch order", 512, "--max-accuracy-drop", 0.01,
               "stop before calibration accuracy falls more than this"), argv)

    cfg = Config(**QUICK) if a.quick else Config()
    data = load_data(cfg.n_train, cfg.n_test)
    model, seconds = load_or_train(cfg, a.seed, a.cache, a.threads, data)
    Xte, yte = data[2:]
    acc = accuracy(model, Xte, yte)
    how = f"trained in {seconds:.0f}s" if seconds else f"loaded from {cache_file(a.cache, cfg, a.seed)}"
    print(f"ViT ({sum(p.numel() for p in model.parameters()):,} parameters), {how}: "
          f"test accuracy {acc:.4f} on {len(yte):,} images")

    Xtr, ytr = data[0][:a.calib], data[1][:a.calib]
    out = prune_and_report(
        model, (Xtr, ytr), lambda m: {"test accuracy": accuracy(m, Xte, yte)}, criterion=a.criterion,
        stop=stop_of(a, max_accuracy_drop=a.max_accuracy_drop), example=Xte[:1],
        compare_criteria=["taylor1", "taylor2", "fisher", "mean-activation", "l1-in"],
        compare_samples=32 if a.quick else 128, compare_steps=2 if a.quick else 5, cost=a.cost,
        compensation=a.compensation, compare=not a.no_compare, json_path=a.json)
    return {"accuracy": acc, "train_seconds": seconds, "model": model, **out}


if __name__ == "__main__":
    main()
