"""Taylor criteria: hand-worked OBD values, and derivatives against finite differences."""
import math

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import losses

from ..conftest import ACTS, OUTS, random_data, random_net

LN3 = math.log(3.0)


def one_layer_hand_net():
    # x = 0 -> hidden pre-activations 0 -> h = (0.5, 0.5); z = 0.5 - 0.5 = 0 -> o = 0.5; t = 1
    return shrinknet.MLP.from_numpy([[[1.0], [2.0]], [[1.0, -1.0]]], [[0.0, 0.0], [0.0]], dtype=torch.float64)


def two_layer_hand_net():
    # x = 0: x1 = 0, h1 = 0.5; x2 = 0.5 * (2, 4) + (ln3 - 1, -ln3 - 2) = (ln3, -ln3), h2 = (0.75, 0.25);
    # z = 0.75 + 0.25 - 1 = 0, o = 0.5, t = 1
    return shrinknet.MLP.from_numpy([[[1.0]], [[2.0], [4.0]], [[1.0, 1.0]]],
                                    [[0.0], [LN3 - 1, -LN3 - 2], [-1.0]], dtype=torch.float64)


X0 = np.zeros((1, 1))
T1 = np.ones((1, 1))


def test_obd_one_hidden_layer_by_hand():
    m = one_layer_hand_net()
    # dE/dz = -0.125, d2E/dz2 = 0.0625; dE/dh = -0.125 * (1, -1); d2E/dh2 = 0.0625 * (1, 1)
    # taylor1 = -h dE/dh = (0.0625, -0.0625); taylor2 = taylor1 + 0.5 * 0.25 * 0.0625
    t1 = shrinknet.score(m, X0, T1, "taylor1")[0]
    t2 = shrinknet.score(m, X0, T1, "taylor2")[0]
    np.testing.assert_allclose(t1, [0.0625, -0.0625], rtol=0, atol=1e-15)
    np.testing.assert_allclose(t2, [0.0703125, -0.0546875], rtol=0, atol=1e-15)
    # the exact change: removing unit 0 leaves z = -0.5
    bf = shrinknet.score(m, X0, T1, "brute-force")[0]
    s = 1 / (1 + math.exp(0.5))
    np.testing.assert_allclose(bf[0], 0.5 * (1 - s) ** 2 - 0.125, rtol=1e-12)


def test_obd_two_hidden_layers_by_hand():
    m = two_layer_hand_net()
    t1 = shrinknet.score(m, X0, T1, "taylor1")
    t2 = shrinknet.score(m, X0, T1, "taylor2")
    # layer 2: dE/dh2 = (-0.125, -0.125), d2E/dh2^2 = (0.0625, 0.0625)
    np.testing.assert_allclose(t1[1], [0.09375, 0.03125], atol=1e-15)
    np.testing.assert_allclose(t2[1], [0.09375 + 0.5 * 0.5625 * 0.0625, 0.03125 + 0.5 * 0.0625 * 0.0625], atol=1e-15)
    # s'(x2) = 0.1875, s''(x2) = (-0.09375, 0.09375)
    # dE/dx2 = -0.125 * 0.1875 = -0.0234375; d2E/dx2^2 = 0.0625 * 0.1875^2 - 0.125 * s'' = (0.013916015625, -0.009521484375)
    # dE/dh1 = -0.0234375 * (2 + 4) = -0.140625; d2E/dh1^2 = 0.013916015625 * 4 - 0.009521484375 * 16 = -0.0966796875
    np.testing.assert_allclose(t1[0], [0.0703125], atol=1e-15)
    np.testing.assert_allclose(t2[0], [0.0703125 + 0.5 * 0.25 * -0.0966796875], atol=1e-15)


def _scaled_error(m, X, T, loss, l, k, t):
    g = [x.clone() for x in m.gates]
    g[l][k] *= 1 + t
    return losses.total(m.logits(X, g), T, m.output_activation, loss).item()


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
def test_first_and_exact_second_derivative_against_finite_differences(act, out, loss):
    m = random_net([5, 4], act, out, seed=3)
    X, T = random_data(seed=3)
    t1 = shrinknet.score(m, X, T, "taylor1", loss)
    t2x = shrinknet.score(m, X, T, "taylor2-exact", loss)
    h = 1e-4
    for l, k in [(0, 0), (0, 3), (1, 1), (1, 3)]:
        ep, e0, em = (_scaled_error(m, X, T, loss, l, k, t) for t in (h, 0.0, -h))
        d1 = (ep - em) / (2 * h)               # sum_n o dE/do
        d2 = (ep - 2 * e0 + em) / h ** 2       # sum_n o^2 d2E/do^2 (exact)
        np.testing.assert_allclose(t1[l][k], -d1, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(t2x[l][k], -d1 + 0.5 * d2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ACTS)
def test_obd_is_exact_for_one_hidden_layer_with_elementwise_output(act):
    # with one hidden layer and an elementwise output (sigmoid + SSE), d2E/do^2 has no cross terms
    m = random_net([7], act, "sigmoid", seed=5)
    X, T = random_data(seed=5)
    np.testing.assert_allclose(shrinknet.score(m, X, T, "taylor2")[0],
                               shrinknet.score(m, X, T, "taylor2-exact")[0], rtol=1e-10, atol=1e-12)


def test_obd_differs_from_exact_when_cross_terms_matter():
    m = random_net([5, 4], "sigmoid", "sigmoid", seed=2)
    X, T = random_data(seed=2)
    a, b = shrinknet.score(m, X, T, "taylor2")[0], shrinknet.score(m, X, T, "taylor2-exact")[0]
    assert np.abs(a - b).max() > 1e-6


def test_removed_neurons_are_nan_and_others_unchanged_by_gate_semantics():
    m = random_net([6, 5], seed=1)
    X, T = random_data(seed=1)
    m.gates[0][2] = 0.0
    for c in shrinknet.available_criteria():
        s = shrinknet.score(m, X, T, c)
        assert np.isnan(s[0][2]) and not np.isnan(np.delete(s[0], 2)).any() and not np.isnan(s[1]).any(), c


def test_thresholding_replaces_outliers_by_center():
    from shrinknet.criteria.taylor import threshold
    s = [torch.tensor([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.0, 1.01, 0.99, -50.0]), torch.tensor([float("nan")])]
    mean_clipped = threshold(s, "mean")
    med_clipped = threshold(s, "median")
    assert mean_clipped[0][-1].item() == pytest.approx(s[0].mean().item())
    assert med_clipped[0][-1].item() == pytest.approx(1.0)
    assert torch.equal(med_clipped[0][:-1], s[0][:-1]) and torch.isnan(med_clipped[1]).all()
