import numpy as np
import pytest

import shrinknet
from shrinknet import losses

from ..conftest import ACTS, OUTS, random_data, random_net


def literal_scores(m, X, T, loss):
    """dE_k written out: zero one gate, run the whole net, compare errors."""
    E0 = losses.total(m.logits(X), T, m.output_activation, loss).item()
    out = []
    for l, k in enumerate(m.hidden_sizes):
        s = np.full(k, np.nan)
        for u in range(k):
            if m.gates[l][u] == 0:
                continue
            g = [x.clone() for x in m.gates]
            g[l][u] = 0
            s[u] = losses.total(m.logits(X, g), T, m.output_activation, loss).item() - E0
        out.append(s)
    return out


@pytest.mark.parametrize("hidden", [[6], [5, 4], [4, 3, 5]])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
def test_fast_brute_force_equals_definition(hidden, act, out, loss):
    m = random_net(hidden, act, out, seed=len(hidden))
    X, T = random_data(seed=len(hidden))
    m.gates[0][1] = 0.0  # one neuron already removed
    ref = literal_scores(m, X, T, loss)
    for name in ("brute-force", "brute-force-literal"):
        got = shrinknet.score(m, X, T, name, loss)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_fast_brute_force_with_tiny_chunks(monkeypatch):
    monkeypatch.setenv("SHRINKNET_FUSED", "0")              # the PyTorch path is the one that chunks
    from shrinknet.oracle import rank1 as oracle
    m = random_net([5, 4, 3], seed=9)
    X, T = random_data(n=33, seed=9)
    ref = shrinknet.score(m, X, T, "brute-force")
    monkeypatch.setattr(oracle, "DEFAULT_CHUNK", 7)
    got = shrinknet.score(m, X, T, "brute-force")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12)
