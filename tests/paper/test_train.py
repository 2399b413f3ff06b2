import torch

import shrinknet
from shrinknet.paper.data import load
from shrinknet.paper.train import TrainConfig, train


def test_training_is_deterministic_and_learns():
    d = load("diamond")
    runs = []
    for _ in range(2):
        m = shrinknet.MLP([2, 20, 2], seed=0)
        h = train(m, d.X_train, d.T_train, TrainConfig(epochs=15, lr=0.02, batch_size=64, seed=0))
        runs.append((m, h))
    (a, ha), (b, hb) = runs
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert ha[-1]["loss"] < 0.5 * ha[0]["loss"] and ha[-1]["accuracy"] > 0.85


def test_target_accuracy_stops_early():
    d = load("diamond")
    m = shrinknet.MLP([2, 20, 2], seed=0)
    h = train(m, d.X_train, d.T_train, TrainConfig(epochs=200, lr=0.02, batch_size=64, target_accuracy=0.8))
    assert len(h) < 200 and h[-1]["accuracy"] >= 0.8


def test_patience_stops_when_the_training_loss_stalls():
    from shrinknet.paper.train import _stalled
    hist = [{"loss": v} for v in [10, 5, 4, 3.999, 3.998, 3.9975]]
    assert not _stalled(hist[:3], 3, 1e-3)                 # not yet patience epochs after a first one
    assert _stalled(hist, 3, 1e-3)                          # best of the last 3 is 3.9975 > 4 x (1 - 0.001)
    assert not _stalled(hist, 3, 1e-4)                      # ... but more than 0.01 % below 4
    d = load("digits")
    m = shrinknet.MLP([64, 8, 10], "sigmoid", "sigmoid", seed=0)
    h = train(m, d.X_train, d.T_train, TrainConfig(epochs=500, lr=1e-3, batch_size=50, patience=3, stall=0.05))
    assert 4 <= len(h) < 500 and _stalled(h, 3, 0.05) and not _stalled(h[:-1], 3, 0.05)
