"""Every bad input gives one ShrinkNetError that names the problem; nothing is overwritten."""
import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import MLP

from .conftest import random_data, random_net

E = shrinknet.ShrinkNetError


def test_wrong_input_shape():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"X: expected shape \(N, 4\), got \(40, 3\)"):
        shrinknet.prune(m, X[:, :3], T)


def test_wrong_target_shape():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"T: expected shape \(40, 3\), got \(40, 2\)"):
        shrinknet.score(m, X, T[:, :2])
    with pytest.raises(E, match="T: expected 40 labels"):
        shrinknet.score(m, X, np.zeros(39, dtype=int))
    with pytest.raises(E, match=r"labels in \[0, 3\)"):
        shrinknet.score(m, X, np.full(40, 7))


def test_nan_weights():
    m = random_net([5])
    with torch.no_grad():
        m.layers[0].weight[0, 0] = float("nan")
    X, T = random_data()
    with pytest.raises(E, match="layers.0.weight: expected finite values"):
        shrinknet.prune(m, X, T)
    with pytest.raises(E, match=r"weights\[0\]: expected finite values"):
        MLP.from_numpy([np.full((2, 2), np.nan), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])


def test_nan_data():
    m = random_net([5])
    X, T = random_data()
    X[0, 0] = float("nan")
    with pytest.raises(E, match="X: expected finite values"):
        shrinknet.score(m, X, T)


def test_unknown_names():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match="unknown criterion 'taylor3'"):
        shrinknet.prune(m, X, T, criterion="taylor3")
    with pytest.raises(E, match="unknown loss 'mse'"):
        shrinknet.score(m, X, T, loss="mse")
    with pytest.raises(E, match="unknown schedule"):
        shrinknet.prune(m, X, T, schedule="greedy")
    with pytest.raises(E, match="unknown hidden activation 'swish'"):
        MLP([2, 3, 1], "swish")


def test_empty_data():
    m = random_net([5])
    with pytest.raises(E, match="X: expected a non-empty array"):
        shrinknet.score(m, np.zeros((0, 4)), np.zeros((0, 3)))


def test_bad_stop_values():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match="stop.fraction: expected a number in"):
        shrinknet.prune(m, X, T, stop={"fraction": 1.5})
    with pytest.raises(E, match="stop.n_neurons"):
        shrinknet.prune(m, X, T, stop={"n_neurons": -1})
    with pytest.raises(E, match="stop:"):
        shrinknet.prune(m, X, T, stop="half")


def test_corrupt_model_file_is_reported_and_untouched(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(E, match="not a readable safetensors file"):
        MLP.load(p)
    assert p.read_bytes() == b"\x00\x01not a safetensors file at all"
    with pytest.raises(E, match="not found"):
        MLP.load(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(E, match="expected format 'shrinknet-mlp'"):
        MLP.load(p)


def test_criterion_returning_wrong_shape_or_nan():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"expected scores of shape \(5,\)"):
        shrinknet.prune(m, X, T, lambda *a: [torch.zeros(4)])
    with pytest.raises(E, match="non-finite score to active neuron"):
        shrinknet.prune(m, X, T, lambda *a: [torch.full((5,), float("nan"))])


def test_not_a_model():
    X, T = random_data()
    with pytest.raises(E, match="model: expected shrinknet.MLP"):
        shrinknet.score("model.pt", X, T)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_non_finite_entry_anywhere_is_found(bad, dtype):
    from shrinknet._validation import all_finite
    X = torch.linspace(-3.0, 3.0, 24, dtype=dtype).reshape(4, 6)
    assert all_finite(X) and all_finite(X[:0])
    for pos in [(0, 0), (2, 3), (3, 5)]:
        Y = X.clone()
        Y[pos] = bad
        assert not all_finite(Y)
        with pytest.raises(shrinknet.ShrinkNetError, match="1 NaN/inf entries"):
            shrinknet.score(MLP([6, 3, 2], seed=0), Y, np.zeros(4, dtype=int))
