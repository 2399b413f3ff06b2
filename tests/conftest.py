import numpy as np
import pytest
import torch

import shrinknet

ACTS = ["sigmoid", "tanh", "relu", "gelu"]
OUTS = ["sigmoid", "softmax", "identity"]


def random_net(hidden, act="sigmoid", out="sigmoid", n_in=4, n_out=3, seed=0):
    """A small float64 MLP with weights large enough that neurons interact non-trivially."""
    m = shrinknet.MLP([n_in, *hidden, n_out], act, out, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in m.layers:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=torch.float64) * 1.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=torch.float64) * 0.5)
    return m


def random_data(n=40, n_in=4, n_out=3, seed=0, classes=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if classes:
        T = np.eye(n_out)[rng.integers(0, n_out, n)]
    else:
        T = rng.uniform(0, 1, (n, n_out))
    return torch.tensor(X), torch.tensor(T)


@pytest.fixture
def net_and_data():
    return random_net([6, 5]), *random_data()
