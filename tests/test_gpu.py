"""On a GPU, where one is present: the MLP fast path and the generic path decide as on the CPU."""
import pytest
import torch

import shrinknet
from tests.conftest import image_data, tiny_cnn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("criterion", ["brute-force", "taylor2", "fisher"])
def test_the_mlp_and_a_cnn_prune_on_cuda_as_on_the_cpu(criterion):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (60,), generator=g)
    mlp = shrinknet.MLP([5, 8, 6, 3], "tanh", "softmax", seed=0, dtype=torch.float64)
    Xc, yc = image_data(n=30)
    for model, data in ((mlp, (X, y)), (tiny_cnn(), (Xc, yc))):
        cpu = shrinknet.prune(model, *data, criterion=criterion, stop=shrinknet.Stop(n_neurons=6))
        gpu = shrinknet.prune(model, *data, criterion=criterion, stop=shrinknet.Stop(n_neurons=6), device="cuda")
        assert gpu.removed == cpu.removed
        assert gpu.errors == pytest.approx(cpu.errors, rel=1e-9)
