"""Linear / Conv1D output features as units (shrinknet.units.linear): where the gate sits, the shapes a
file records and how a template's layer takes them back."""
import torch
from torch import nn

from shrinknet.finding import _trace
from shrinknet.units import KINDS
from shrinknet.units.base import Trace
from shrinknet.units.linear import LINEAR, chain_end


def _trace_of(net, x):
    calls, out = _trace(net, x)
    return Trace(net, calls, out, [], [], [])


def test_the_gate_sits_after_the_batchnorm_and_activation_that_consume_the_layer():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)).eval()
    t = _trace_of(net, torch.ones(1, 2))
    u = LINEAR.unit("0", t)
    assert (u.name, u.kind, u.size, u.gate_at, u.chain) == ("0", "linear", 3, "2", ("0", "1", "2"))
    assert (u.on_input, u.block, u.channel_dim) == (False, 1, -1)
    assert LINEAR.unit("1", t) is None and LINEAR.unit("nope", t) is None        # a BatchNorm, no module
    assert chain_end(t.calls, "3", t.calls[-1][3])[0] == ["3"]                   # nothing consumes the output


def test_a_conv2d_is_the_conv_kind_s_and_resolution_follows_the_registry():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1))
    t = _trace_of(net, torch.ones(1, 1, 3, 3))
    assert LINEAR.unit("0", t) is None and KINDS["conv2d"].unit("0", t).size == 2
    assert LINEAR.unit("2", t).size == 1


def test_shapes_and_resize_of_linear_batchnorm1d_and_conv1d():
    from transformers.pytorch_utils import Conv1D
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), Conv1D(3, 5), nn.Conv2d(1, 1, 1))
    assert LINEAR.shapes(net) == {"0": {"in_features": 4, "out_features": 5}, "1": {"num_features": 5},
                                  "2": {"nf": 3, "nx": 5}}
    resize = LINEAR.resizer(net, "f")
    assert resize("0", net[0], {"in_features": 2, "out_features": 3}) is True
    assert resize("1", net[1], {"num_features": 3}) is True
    assert resize("2", net[2], {"nf": 1, "nx": 3}) is True
    assert resize("3", net[3], {"in_channels": 1}) is False                     # the conv kind's
    assert tuple(net[0].weight.shape) == (3, 2) and tuple(net[0].bias.shape) == (3,)
    assert tuple(net[1].weight.shape) == (3,) and tuple(net[1].running_var.shape) == (3,)
    assert tuple(net[2].weight.shape) == (3, 1) and tuple(net[2].bias.shape) == (1,)
    assert LINEAR.shapes(net)["0"] == {"in_features": 2, "out_features": 3}
