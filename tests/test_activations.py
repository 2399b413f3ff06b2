import pytest
import torch

from shrinknet.activations import HIDDEN

from .conftest import ACTS


@pytest.mark.parametrize("name", ACTS)
def test_derivatives_match_autograd(name):
    a = HIDDEN[name]
    x = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_()
    x = x[x.abs() > 1e-6].detach().requires_grad_()  # relu has no derivative at 0
    o = a.f(x)
    (d1,) = torch.autograd.grad(o.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    torch.testing.assert_close(a.d1(x, o), d1)
    torch.testing.assert_close(a.d2(x, o), d2)


def test_sigmoid_closed_forms_at_known_points():
    a = HIDDEN["sigmoid"]
    x = torch.tensor([0.0, torch.log(torch.tensor(3.0))], dtype=torch.float64)
    o = a.f(x)  # 0.5 and 0.75
    torch.testing.assert_close(a.d1(x, o), torch.tensor([0.25, 0.1875], dtype=torch.float64))
    torch.testing.assert_close(a.d2(x, o), torch.tensor([0.0, -0.09375], dtype=torch.float64))
