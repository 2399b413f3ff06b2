import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import MLP

from .conftest import random_data, random_net


def test_from_numpy_forward_matches_numpy():
    rng = np.random.default_rng(0)
    W = [rng.normal(size=(5, 3)), rng.normal(size=(2, 5))]
    b = [rng.normal(size=5), rng.normal(size=2)]
    m = MLP.from_numpy(W, b, "tanh", "identity", dtype=torch.float64)
    X = rng.normal(size=(4, 3))
    ref = np.tanh(X @ W[0].T + b[0]) @ W[1].T + b[1]
    np.testing.assert_allclose(m.predict(X), ref, rtol=1e-12)
    W2, b2 = m.to_numpy()
    np.testing.assert_array_equal(W2[1], W[1])


def test_gate_zero_equals_zeroing_outgoing_weights():
    m = random_net([5, 4])
    X, _ = random_data()
    m2 = m.clone()
    with torch.no_grad():
        m2.layers[1].weight[:, 2] = 0
    m.gates[0][2] = 0
    torch.testing.assert_close(m(X), m2(X))


def test_from_sequential_matches_outputs():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.Linear(6, 5), torch.nn.GELU(),
                              torch.nn.Linear(5, 3), torch.nn.Softmax(dim=-1))
    m = MLP.from_sequential(seq)
    assert m.sizes == [4, 6, 5, 3] and m.hidden_activation == "gelu" and m.output_activation == "softmax"
    X = torch.randn(7, 4)
    torch.testing.assert_close(m(X), seq(X))


def test_from_sequential_rejects_unsupported_layer():
    seq = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LeakyReLU(), torch.nn.Linear(6, 2))
    with pytest.raises(shrinknet.ShrinkNetError, match="LeakyReLU"):
        MLP.from_sequential(seq)
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    with pytest.raises(shrinknet.ShrinkNetError, match="Conv2d"):
        MLP.from_sequential(seq)


def test_save_load_round_trip(tmp_path):
    m = random_net([5, 4], "relu", "softmax")
    m.gates[1][3] = 0
    p = m.save(tmp_path / "m.safetensors")
    back = MLP.load(p)
    X, _ = random_data()
    torch.testing.assert_close(back(X), m(X))
    assert back.hidden_activation == "relu" and back.n_active() == 8


def test_seeded_init_is_deterministic():
    a, b = MLP([3, 4, 2], seed=5), MLP([3, 4, 2], seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(MLP([3, 4, 2], seed=6).layers[0].weight, a.layers[0].weight)


