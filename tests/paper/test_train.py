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
