"""The output channels of an ``nn.Conv2d`` as units (a channel is one neuron).

As :mod:`shrinknet.units.linear` (found with the BatchNorm and activation modules that directly consume
it, cut on the dependency graph: a Linear after a flatten loses each removed channel's H x W block of
columns, costed by measuring its cut), except that the gate multiplies the channel dimension (dim 1 of
(B, K, H, W)) and the layers saved are Conv2d and BatchNorm2d.
"""
from __future__ import annotations

from torch import nn

from .linear import LinearKind, resize_batchnorm


class Conv2dKind(LinearKind):
    """Output channels of a Conv2d (see the module's docstring)."""
    name = "conv2d"
    shaped = {nn.Conv2d: ("in_channels", "out_channels"), nn.BatchNorm2d: ("num_features",)}

    def owns(self, m) -> bool:
        return isinstance(m, nn.Conv2d)

    def size_of(self, m) -> int:
        return m.out_channels

    def channel_dim(self, unit) -> int:
        return 1

    def resizes(self, m) -> bool:
        return type(m) in self.shaped

    def rebuild(self, m) -> None:
        if isinstance(m, nn.Conv2d):
            m.weight = nn.Parameter(m.weight.new_empty(m.out_channels, m.in_channels // m.groups, *m.kernel_size))
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias.new_empty(m.out_channels))
        else:
            resize_batchnorm(m)


CONV2D = Conv2dKind()

__all__ = ["CONV2D", "Conv2dKind"]
