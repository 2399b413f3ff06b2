"""FFN neurons as units (shrinknet.units.ffn): plain pairs found in the trace, a gated MLP cut with its size."""
import torch
from torch import nn

from shrinknet import blocks
from shrinknet.finding import _trace
from shrinknet.units.base import Trace
from shrinknet.units.ffn import GATED_FFN, find_pairs


def test_a_pair_is_two_dense_layers_with_only_elementwise_modules_between():
    net = nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Dropout(0.0), nn.Linear(4, 2), nn.LayerNorm(2), nn.Linear(2, 3),
                        nn.Linear(3, 3))
    calls, _ = _trace(net.eval(), torch.ones(1, 2))
    # 0 -> 3 (GELU, Dropout between); 3 -> 5 broken by the LayerNorm; 5 -> 6 a pair too
    assert find_pairs(calls, []) == {"0": "3", "5": "6"}
    site = blocks.ffn_site("0", net[0], "3")
    # a layer taken by a site (an attention projection) is no FFN's
    assert find_pairs(calls, [site]) == {"5": "6"}


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 3)
        self.intermediate_size = 4

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def test_a_gated_mlp_loses_its_neurons_rows_and_column_and_its_size_follows():
    mlp, x = _MLP(), torch.randn(5, 3)
    site = blocks.gated_ffn_site("", mlp)
    unit = GATED_FFN.unit("", Trace(mlp, [], None, [], [site], []))
    assert (unit.kind, unit.size, unit.gate_at, GATED_FFN.first_module(unit)) == ("gated-ffn", 4, "down_proj", "gate_proj")
    # what the gate does with neurons 1 and 3 off ...
    h = nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x)
    want = mlp.down_proj(GATED_FFN.gate(unit, h, torch.tensor([1.0, 0.0, 1.0, 0.0])))
    GATED_FFN.cut(mlp, unit, [0, 2])
    # ... the cut does: two rows of each projection in, two columns out
    assert (mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.down_proj.in_features) == (2, 2, 2)
    assert mlp.intermediate_size == 2
    assert torch.allclose(mlp(x), want, rtol=0, atol=1e-6)
