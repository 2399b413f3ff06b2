import numpy as np
import torch

import shrinknet

from ..conftest import random_data


def hand_net():
    # 2 inputs, hidden units with known weights, 1 output
    W = [np.array([[1.0, -2.0], [0.5, 0.5], [0.0, 3.0]]), np.array([[2.0, -1.0, 0.5]])]
    b = [np.zeros(3), np.zeros(1)]
    return shrinknet.MLP.from_numpy(W, b, "relu", "identity", dtype=torch.float64)


X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
T = np.zeros((4, 1))


def test_weight_norms():
    m = hand_net()
    np.testing.assert_allclose(shrinknet.score(m, X, T, "l1-in")[0], [3.0, 1.0, 3.0])
    np.testing.assert_allclose(shrinknet.score(m, X, T, "l2-in")[0], [5 ** 0.5, 0.5 ** 0.5, 3.0])
    np.testing.assert_allclose(shrinknet.score(m, X, T, "l1-out")[0], [2.0, 1.0, 0.5])
    np.testing.assert_allclose(shrinknet.score(m, X, T, "l2-out")[0], [2.0, 1.0, 0.5])


def test_activation_statistics_and_apoz():
    m = hand_net()
    # relu outputs per sample: unit0 = relu(x0 - 2 x1) = 1, 0, 0, 1; unit1 = relu(.5 x0 + .5 x1) = .5, .5, 1, 0
    # unit2 = relu(3 x1) = 0, 3, 3, 0
    np.testing.assert_allclose(shrinknet.score(m, X, T, "mean-activation")[0], [0.5, 0.5, 1.5])
    np.testing.assert_allclose(shrinknet.score(m, X, T, "activation-variance")[0], [0.25, 0.125, 2.25])
    np.testing.assert_allclose(shrinknet.score(m, X, T, "apoz")[0], [0.5, 0.75, 0.5])


def test_taylor1_abs_is_abs_of_taylor1():
    m = hand_net()
    Tn = np.array([[1.0], [-1.0], [0.5], [2.0]])
    np.testing.assert_allclose(shrinknet.score(m, X, Tn, "taylor1-abs")[0],
                               np.abs(shrinknet.score(m, X, Tn, "taylor1")[0]))


def test_removed_neurons_do_not_count_in_neighbours_weight_norms():
    m = shrinknet.MLP([3, 4, 2, 1], seed=0, dtype=torch.float64)
    X, T = random_data(n=5, n_in=3, n_out=1, classes=False)
    before = shrinknet.score(m, X, T, "l1-out")[0]
    m.gates[1][0] = 0.0
    after = shrinknet.score(m, X, T, "l1-out")[0]
    np.testing.assert_allclose(after, before - m.layers[1].weight[0].abs().detach().numpy())


def test_random_is_reproducible_and_changes_with_the_state():
    m = shrinknet.MLP([3, 6, 1], seed=0)
    X, T = random_data(n=5, n_in=3, n_out=1, classes=False)
    a, b = shrinknet.score(m, X, T, "random")[0], shrinknet.score(m, X, T, "random")[0]
    np.testing.assert_array_equal(a, b)
    assert shrinknet.prune(m, X, T, "random").removed == shrinknet.prune(m, X, T, "random").removed
