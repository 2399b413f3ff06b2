"""A small CNN with BatchNorm on Fashion-MNIST: train, prune channels and neurons without
retraining, shrink, report.

    python examples/cnn_bn_fashion.py                        # about two minutes on 2 CPU cores
    python examples/cnn_bn_fashion.py --criterion brute-force --schedule single

The net is a plain ``nn.Sequential``: two Conv2d -> BatchNorm2d -> ReLU -> MaxPool blocks (16 and 32
channels), Flatten, Linear(1568, 64) -> ReLU -> Linear(64, 10). shrinknet gates the 16 + 32 channels
and the 64 hidden features (after each BatchNorm / ReLU, so a gated-off channel is silent), removes
them one at a time by the criterion (the second-order Taylor estimate by autograd on the gates by
default, re-ranked after every removal) on 2,000 training images, and then builds the physically
smaller net: the convolutions lose filters, BatchNorm loses channels, the next convolution loses
input channels and the Linear after the flatten loses each removed channel's 7 x 7 block of columns.
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


def make_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),     # (16, 14, 14)
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),    # (32, 7, 7)
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--criterion", default="taylor2", help="pruning criterion (default: taylor2)")
    ap.add_argument("--schedule", default="iterative", choices=["iterative", "single"],
                    help="re-rank after every removal (default) or rank once")
    ap.add_argument("--fraction", type=float, default=0.5, help="share of channels + neurons to remove (default: 0.5)")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.02,
                    help="never lose more than this accuracy on the pruning images (default: 0.02)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    ap.add_argument("--eval-samples", type=int, default=2000, help="training images the criterion uses (default: 2000)")
    ap.add_argument("--out", default="examples/out/cnn_bn", help="where to save the smaller model")
    a = ap.parse_args(argv)

    torch.manual_seed(0)
    d = fashion_mnist()
    Xtr, ytr = torch.as_tensor(d.X_train).reshape(-1, 1, 28, 28), torch.as_tensor(d.y_train)
    Xte, yte = torch.as_tensor(d.X_test).reshape(-1, 1, 28, 28), torch.as_tensor(d.y_test)
    net = make_cnn()
    train_classifier(net, Xtr, ytr, epochs=a.epochs, lr=2e-3, batch_size=128, seed=0)

    idx = torch.as_tensor(np.sort(np.random.default_rng(0).permutation(len(Xtr))[:a.eval_samples]))
    res = shrinknet.prune(net, Xtr[idx], ytr[idx], criterion=a.criterion, schedule=a.schedule, loss="cross-entropy",
                          stop=shrinknet.Stop(fraction=a.fraction, max_accuracy_drop=a.max_accuracy_drop))
    small = shrinknet.shrink(net, res)
    print(f"removed {res.n_removed} of {res.initially_active} units ({res.stop_reason}) with {a.criterion} "
          f"({a.schedule}) in {res.seconds:.1f}s, no retraining")
    report = shrinknet.compare_models(net, small, Xte[:1], data=(Xte, yte), kept=res)
    print(report)
    print("(accuracy on the 10,000 test images)")
    files = save_shrunk(small, a.out, Xte[:1], report)       # small.onnx too where onnx is installed
    print(f"saved {', '.join(files)} in {a.out}/")
    return report


if __name__ == "__main__":
    main()
