"""Gates on any nn.Module: which modules are units, where the gate sits, and bad input."""
import pytest
import torch
from torch import nn

from shrinknet import GatedModel, ShrinkNetError
from tests.conftest import image_data, tiny_cnn, tiny_resnet


def test_default_units_skip_the_output_layer_and_gate_after_bn_and_activation():
    gm = GatedModel(tiny_cnn(), example_input=torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    assert gm.unit_names == ["0", "4", "9"]
    assert [u.chain for u in gm.units] == [("0", "1", "2"), ("4", "5", "6"), ("9", "10")]
    assert [u.kind for u in gm.units] == ["conv2d", "conv2d", "linear"]
    assert gm.hidden_sizes == [4, 5, 6] and gm.n_active() == 15


def test_default_units_leave_out_channels_coupled_through_a_residual_addition():
    gm = GatedModel(tiny_resnet(), example_input=torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    assert gm.unit_names == ["conv1", "fc1"]
    # a functional relu after bn1 is not a module: the gate sits on bn1's output
    assert gm.units[0].gate_at == "bn1"


def test_units_by_name_and_by_type():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    assert GatedModel(tiny_cnn(), ["9", "0"], x).unit_names == ["0", "9"]          # forward order
    assert GatedModel(tiny_cnn(), [nn.Conv2d], x).unit_names == ["0", "4"]
    assert GatedModel(tiny_cnn(), [nn.Linear], x).unit_names == ["9"]             # not the output layer


def test_gate_zero_silences_a_channel_for_its_consumers():
    net = tiny_cnn()
    X, _ = image_data()
    gm = GatedModel(net, ["4"], X[:1])
    gm.set_gate(0, 2, 0.0)
    seen = {}
    gm.model[7].register_forward_hook(lambda m, i, o: seen.setdefault("pool", o))
    gm(X)
    assert torch.all(seen["pool"][:, 2] == 0)
    assert torch.any(seen["pool"][:, 1] != 0)


def test_the_callers_model_is_copied_and_never_hooked():
    net = tiny_cnn()
    X, _ = image_data()
    before = net(X)
    gm = GatedModel(net, example_input=X[:1])
    gm.set_gates([torch.zeros(4), torch.ones(5), torch.ones(6)])
    assert torch.equal(net(X), before) and not torch.allclose(gm(X), before)
    twin = gm.clone()
    twin.set_gate(1, 0, 0.0)
    assert float(gm.gates[1][0]) == 1.0 and not torch.allclose(twin(X), gm(X))


def test_per_sample_gates_equal_one_model_per_sample():
    X, _ = image_data(n=3)
    gm = GatedModel(tiny_cnn(), example_input=X[:1])
    rows = torch.ones(3, 5, dtype=torch.float64)
    rows[1, 3] = 0.0
    with gm.overriding({1: rows}):
        z = gm(X)
    gm.set_gate(1, 3, 0.0)
    assert torch.allclose(z[1], gm(X[1:2])[0]) and not torch.allclose(z[0], gm(X[:1])[0])


@pytest.mark.parametrize("units, message", [
    (["nope"], "no module named 'nope'"),
    (["1"], "is a BatchNorm2d; expected nn.Linear or nn.Conv2d"),
    (["11"], "produces the model's output"),
    ([nn.ReLU], "expected module names, 'heads' or the types"),
    ([3], "expected module names (str), 'heads' or types"),
])
def test_bad_units_are_named(units, message):
    with pytest.raises(ShrinkNetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GatedModel(tiny_cnn(), units, torch.zeros(1, 1, 8, 8, dtype=torch.float64))


def test_a_layer_called_twice_cannot_be_gated():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(torch.relu(self.a(x)))))
    with pytest.raises(ShrinkNetError, match="called 2 times"):
        GatedModel(Twice(), ["a"], torch.zeros(1, 3))


def test_wrong_example_input_and_non_modules():
    with pytest.raises(ShrinkNetError, match=r"forward pass on example input \(shape"):
        GatedModel(tiny_cnn(), example_input=torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ShrinkNetError, match="example_input: expected a batch the model accepts"):
        GatedModel(tiny_cnn())
    with pytest.raises(ShrinkNetError, match="expected a torch nn.Module"):
        GatedModel(lambda x: x, example_input=torch.zeros(1, 2))
