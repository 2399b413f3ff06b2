"""Conv2d channels as units (shrinknet.units.conv): the gate scales dim 1; shapes saved and restored."""
import torch
from torch import nn

from shrinknet.units import Unit
from shrinknet.units.conv import CONV2D


def test_the_gate_scales_each_channel_map_alone_and_per_sample():
    u = Unit("c", "conv2d", 2, "c", ("c",))
    assert u.channel_dim == 1
    t = torch.arange(16.0).reshape(2, 2, 2, 2)                  # (B, K, H, W)
    got = CONV2D.gate(u, t, torch.tensor([0.0, 2.0]))
    assert got[:, 0].abs().sum() == 0 and torch.equal(got[:, 1], 2 * t[:, 1])
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]])               # sample 0 keeps channel 0, sample 1 channel 1
    got = CONV2D.gate(u, t, rows)
    assert got[0, 0].tolist() == [[0.0, 1.0], [2.0, 3.0]] and got[0, 1].abs().sum() == 0
    assert got[1, 1].tolist() == [[12.0, 13.0], [14.0, 15.0]] and got[1, 0].abs().sum() == 0


def test_shapes_and_resize_of_a_grouped_conv_and_its_batchnorm():
    net = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.BatchNorm2d(6), nn.Linear(2, 2))
    assert CONV2D.shapes(net) == {"0": {"in_channels": 4, "out_channels": 6}, "1": {"num_features": 6}}
    resize = CONV2D.resizer(net, "f")
    assert resize("0", net[0], {"in_channels": 2, "out_channels": 4}) is True
    assert resize("1", net[1], {"num_features": 4}) is True
    assert resize("2", net[2], {"in_features": 1}) is False
    assert tuple(net[0].weight.shape) == (4, 1, 3, 3) and tuple(net[0].bias.shape) == (4,)
    assert tuple(net[1].running_mean.shape) == (4,)
