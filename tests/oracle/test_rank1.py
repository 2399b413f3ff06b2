import pytest
import torch

from shrinknet import oracle
from shrinknet.context import PruningContext
from shrinknet.oracle import rank1

from ..conftest import ACTS, random_data, random_net


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
def test_perturbed_errors_match_literal_for_any_gains(act, loss, monkeypatch):
    m = random_net([5, 6, 4], act, "softmax", seed=4)
    X, T = random_data(n=25, seed=4)
    m.gates[1][2] = 0.0
    m.gates[2][0] = 0.5  # a non-binary gate downstream
    ctx = PruningContext(m, X, T, loss)
    cache = ctx.cache()
    for layer in range(3):
        units = torch.tensor([0, 1, 3, 3, 1])
        gains = torch.tensor([0.0, 2.5, -1.0, 0.3, 1.0], dtype=torch.float64)
        ref = oracle.literal_errors(ctx, layer, units, gains)
        fast = rank1.perturbed_errors(m, cache, T, loss, layer, units, gains)       # kernel where it applies
        torch.testing.assert_close(fast, ref, rtol=1e-11, atol=1e-12)
        monkeypatch.setenv("SHRINKNET_FUSED", "0")                                   # the chunked PyTorch path
        fast = rank1.perturbed_errors(m, cache, T, loss, layer, units, gains, chunk=11)
        monkeypatch.delenv("SHRINKNET_FUSED")
        torch.testing.assert_close(fast, ref, rtol=1e-11, atol=1e-12)


def test_output_scaling_derivatives_on_last_layer_match_closed_form():
    # for the last hidden layer with sigmoid + SSE: psi'' = sum_n o^2 sum_i d2E/dz_i^2 w_ik^2
    from shrinknet import losses
    m = random_net([5], "tanh", "sigmoid", seed=0)
    X, T = random_data(seed=0)
    c = PruningContext(m, X, T, "sse").cache()
    d1, d2 = rank1.output_scaling_derivatives(m, c, T, "sse", 0, torch.arange(5))
    dz, d2z = losses.output_derivatives(c.z, T, "sigmoid", "sse")
    W = m.layers[1].weight
    o = c.out[0]
    torch.testing.assert_close(d1, (o * (dz @ W)).sum(0))
    torch.testing.assert_close(d2, (o * o * (d2z @ (W * W))).sum(0))
