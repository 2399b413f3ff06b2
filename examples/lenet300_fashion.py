"""LeNet-300-100 on Fashion-MNIST: train, prune without retraining, shrink, report.

    python examples/lenet300_fashion.py                      # about a minute on 2 CPU cores
    python examples/lenet300_fashion.py --fraction 0.7 --criterion taylor2

A plain ``nn.Sequential`` 784-300-100-10 ReLU net is trained for a few epochs, then shrinknet removes
hidden neurons one at a time by the criterion (exact brute force by default: the MLP fast path,
since the Sequential is an MLP), computed on 5,000 training images, without any retraining. The
pruned net is rebuilt physically smaller and its accuracy, parameters, FLOPs and CPU latency are
printed before and after; the smaller model is saved (safetensors, and ONNX when installed).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import shrinknet
from shrinknet.paper.data import fashion_mnist
from shrinknet.saving import save_shrunk
from shrinknet.paper.train import train_classifier


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--criterion", default="brute-force", help="pruning criterion (default: brute-force)")
    ap.add_argument("--fraction", type=float, default=0.5, help="share of hidden neurons to remove (default: 0.5)")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    ap.add_argument("--eval-samples", type=int, default=5000, help="training images the criterion uses (default: 5000)")
    ap.add_argument("--out", default="examples/out/lenet300", help="where to save the smaller model")
    a = ap.parse_args(argv)

    torch.manual_seed(0)
    d = fashion_mnist()
    Xtr, ytr = torch.as_tensor(d.X_train), torch.as_tensor(d.y_train)
    Xte, yte = torch.as_tensor(d.X_test), torch.as_tensor(d.y_test)
    net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    train_classifier(net, Xtr, ytr, epochs=a.epochs, lr=1e-3, batch_size=128, seed=0)

    idx = torch.as_tensor(np.sort(np.random.default_rng(0).permutation(len(Xtr))[:a.eval_samples]))
    res = shrinknet.prune(net, Xtr[idx], ytr[idx], criterion=a.criterion, loss="cross-entropy",
                          stop=shrinknet.Stop(fraction=a.fraction))
    small = shrinknet.shrink(net, res)                 # rows of 0 / 2 and the matching columns go
    print(f"removed {res.n_removed} of {res.initially_active} hidden neurons with {a.criterion} "
          f"in {res.seconds:.1f}s (no retraining)")
    report = shrinknet.compare_models(net, small, Xte[:1], data=(Xte, yte), kept=res)
    print(report)
    print("(accuracy on the 10,000 test images)")
    files = save_shrunk(small, a.out, Xte[:1], report)       # small.onnx too where onnx is installed
    print(f"saved {', '.join(files)} in {a.out}/")
    return report


if __name__ == "__main__":
    main()
