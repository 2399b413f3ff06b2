import pytest
import torch

from shrinknet import losses

from .conftest import OUTS


@pytest.mark.parametrize("output", OUTS)
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
@pytest.mark.parametrize("soft_targets", [False, True])
def test_output_derivatives_match_autograd(output, loss, soft_targets):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64) * 2
    if soft_targets:
        T = torch.rand(7, 4, generator=g, dtype=torch.float64)
    else:
        T = torch.eye(4, dtype=torch.float64)[torch.randint(0, 4, (7,), generator=g)]
    d1, d2 = losses.output_derivatives(z, T, output, loss)
    for n in range(7):
        zn = z[n].clone().requires_grad_()
        e = losses.per_sample(zn, T[n], output, loss)
        (grad,) = torch.autograd.grad(e, zn, create_graph=True)
        hess = torch.stack([torch.autograd.grad(grad[i], zn, retain_graph=True)[0] for i in range(4)])
        torch.testing.assert_close(d1[n], grad.detach())
        torch.testing.assert_close(d2[n], torch.diagonal(hess))


def test_sse_sigmoid_hand_values():
    # z = 0 -> o = 0.5; t = 1: dE/dz = (o - t) s' = -0.5 * 0.25; d2E/dz2 = s'^2 + (o - t) s'' = 0.0625 + 0
    z, T = torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    d1, d2 = losses.output_derivatives(z, T, "sigmoid", "sse")
    assert d1.item() == -0.125 and d2.item() == 0.0625
    assert losses.total(z, T, "sigmoid", "sse").item() == 0.125


def test_cross_entropy_matches_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    T = torch.eye(3, dtype=torch.float64)[y]
    ref = torch.nn.functional.cross_entropy(z, y, reduction="sum")
    torch.testing.assert_close(losses.total(z, T, "softmax", "cross-entropy"), ref)
    torch.testing.assert_close(losses.total(z, T, "identity", "cross-entropy"), ref)
    ref_b = torch.nn.functional.binary_cross_entropy_with_logits(z, T, reduction="sum")
    torch.testing.assert_close(losses.total(z, T, "sigmoid", "cross-entropy"), ref_b)
