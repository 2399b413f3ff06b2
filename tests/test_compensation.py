import pytest
import torch

import shrinknet
from shrinknet import compensation, losses
from shrinknet.context import PruningContext

from .conftest import random_data, random_net


@pytest.mark.parametrize("mode", ["mean", "lstsq"])
@pytest.mark.parametrize("hidden", [[6], [5, 4]])
@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_fast_oracle_with_compensation_equals_the_literal_definition(mode, hidden, act):
    m = random_net(hidden, act, "softmax", seed=2)
    X, T = random_data(n=60, seed=2)
    ctx = PruningContext(m, X, T, "sse", compensation=mode)
    fast = shrinknet.criteria.get_criterion("brute-force")(ctx)
    lit = shrinknet.criteria.get_criterion("brute-force-literal")(ctx)
    for a, b in zip(fast, lit):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_mean_replacement_folds_the_mean_into_the_bias():
    m = random_net([4], "tanh", "identity", n_out=2, seed=1)
    X, _ = random_data(n=30, n_out=2, seed=1)
    ctx = PruningContext(m, X, torch.zeros(30, 2, dtype=X.dtype), "sse", compensation="mean")
    c = ctx.cache()
    mean = c.out[0][:, 2].mean()
    w = m.layers[1].weight[:, 2].clone()
    b = m.layers[1].bias.clone()
    ctx.remove(0, 2)
    torch.testing.assert_close(m.layers[1].bias, b + mean * w)
    # the outputs moved by -(o - mean) w: on average, not at all
    z = m.logits(X)
    torch.testing.assert_close(z.mean(0), c.z.mean(0))


def test_least_squares_refit_is_the_best_linear_fit():
    m = random_net([5], "sigmoid", "identity", n_out=3, seed=4)
    X, _ = random_data(n=40, n_out=3, seed=4)
    ctx = PruningContext(m, X, torch.zeros(40, 3, dtype=X.dtype), "sse", compensation="lstsq")
    c = ctx.cache()
    target = c.z.clone()
    ctx.remove(0, 1)
    keep = [0, 2, 3, 4]
    A = torch.cat([c.out[0][:, keep], torch.ones(40, 1, dtype=torch.float64)], 1)
    beta = torch.linalg.lstsq(A, target).solution
    torch.testing.assert_close(m.logits(X), A @ beta, rtol=1e-6, atol=1e-8)
    assert m.gates[0][1] == 0


def test_prune_with_compensation_records_its_refit_model():
    m = random_net([8, 6], seed=5)
    X, T = random_data(n=80, seed=5)
    for mode in ("mean", "lstsq"):
        r = shrinknet.prune(m, X, T, "brute-force", stop=7, compensation=mode)
        assert r.compensation == mode and r.n_removed == 7
        # the result's model reproduces its last error
        got = losses.total(r.model.logits(X), T, "sigmoid", "sse").item()
        assert got == pytest.approx(r.errors[-1], rel=1e-9)
        assert r.apply(m) is not r.model and r.model.n_active() == 7


def test_reconstruction_of_the_next_layer_improves_from_none_to_mean_to_lstsq():
    m = random_net([6], "sigmoid", "identity", n_out=4, seed=7)
    X, _ = random_data(n=50, n_out=4, seed=7)
    target = m.logits(X).detach().clone()
    err = {}
    for mode in ("none", "mean", "lstsq"):
        c = m.clone()
        PruningContext(c, X, torch.zeros(50, 4, dtype=X.dtype), "sse", compensation=mode).remove(0, 3)
        err[mode] = ((c.logits(X) - target) ** 2).sum().item()
    assert err["lstsq"] <= err["mean"] <= err["none"] and err["lstsq"] < err["none"]


@pytest.mark.parametrize("mode", ["mean", "lstsq"])
def test_taylor_with_compensation_matches_finite_differences_along_the_residual(mode):
    m = random_net([5, 4], "tanh", "sigmoid", seed=6)
    X, T = random_data(seed=6)
    ctx = PruningContext(m, X, T, "sse", compensation=mode)
    t1 = shrinknet.criteria.get_criterion("taylor1")(ctx)
    t2x = shrinknet.criteria.get_criterion("taylor2-exact")(ctx)
    c = ctx.cache()
    for l, k in [(0, 1), (1, 2)]:
        u = compensation.residuals(m, c, l, torch.tensor([k]), mode)[:, 0]
        W = m.layers[l + 1].weight[:, k]

        def E(t):
            z = _forward_with_change(m, c, l, (-t * u)[:, None] * W[None])
            return losses.total(z, T, "sigmoid", "sse").item()
        h = 1e-4
        d1 = (E(h) - E(-h)) / (2 * h)
        d2 = (E(h) - 2 * E(0) + E(-h)) / h ** 2
        assert t1[l][k].item() == pytest.approx(d1, rel=1e-5, abs=1e-7)
        assert t2x[l][k].item() == pytest.approx(d1 + 0.5 * d2, rel=1e-4, abs=1e-6)


def _forward_with_change(m, c, layer, dx):
    """z when the pre-activations of layer+1 move by dx (N, K_{l+1} or n_out)."""
    x = (c.pre[layer + 1] if layer + 1 < m.n_hidden_layers else c.z) + dx
    for l in range(layer + 1, m.n_hidden_layers):
        x = m.layers[l + 1](m.activation.f(x) * m.gates[l])
    return x


def test_unknown_compensation():
    m = random_net([4])
    X, T = random_data()
    with pytest.raises(shrinknet.ShrinkNetError, match="unknown compensation 'median'"):
        shrinknet.prune(m, X, T, compensation="median")
