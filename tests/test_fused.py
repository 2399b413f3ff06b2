"""The compiled oracle kernel against the PyTorch path it replaces."""
import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import fused
from tests.conftest import random_data, random_net

pytestmark = pytest.mark.skipif(fused.library() is None, reason="no C compiler: the PyTorch path is used")
ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


@pytest.mark.parametrize("activation", list(ACT))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S", [3, 20])                    # fused whole, and elementwise part + BLAS
def test_rank1_layer_is_the_formula(activation, dtype, S):
    g = torch.Generator().manual_seed(0)
    n, c, R = 37, 11, 9
    base, dh = torch.randn(n, R, generator=g, dtype=dtype) * 3, torch.randn(n, c, generator=g, dtype=dtype)
    w, Wt, b = (torch.randn(*s, generator=g, dtype=dtype) for s in ((R, c), (R, S), (S,)))
    gate = torch.rand(R, generator=g, dtype=dtype) * 2
    gate[4] = 0.0
    want = torch.addmm(b, (ACT[activation](base[:, None, :] + dh[:, :, None] * w.T[None]) * gate).reshape(n * c, R),
                       Wt).view(n, c, S)
    got = fused.rank1_layer(base, dh, w, gate, Wt, b, activation)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_the_oracle_decides_the_same_with_and_without_the_kernel(act, monkeypatch):
    m = random_net([7, 6, 5], act, "softmax")
    X, T = random_data()
    with_kernel = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
    monkeypatch.setenv("SHRINKNET_FUSED", "0")
    assert fused.library() is None
    without = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
    assert with_kernel.removed == without.removed
    np.testing.assert_allclose(with_kernel.predicted, without.predicted, rtol=1e-9, atol=1e-9)
