"""The oracle's FLOPs floor against hand counts."""
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet.oracle.floor import flops_floor

from .test_downstream import _context


def test_hand_counted_mlp():
    # 5 -> 4 -> 3 -> 2 on 7 samples: a matrix product is 2 * rows * in * out FLOPs (biases not counted)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    X, y = torch.randn(7, 5), torch.randint(0, 2, (7,))
    ctx = shrinknet.PruningContext.start(net, X, y, units=["0", "2"])    # named units: the general oracle
    f = flops_floor(ctx)
    assert f.full == 2 * 7 * (5 * 4 + 4 * 3 + 3 * 2)
    # a candidate of the first group: its gate acts on the first Linear's output, so the oracle runs
    # the second and third products; of the second group, the third only
    assert f.per_group == [2 * 7 * (4 * 3 + 3 * 2), 2 * 7 * 3 * 2] == f.without_row_cut
    assert not f.rows_cut
    assert f.speedup([4, 3]) == (4 + 3) * f.full / (4 * f.per_group[0] + 3 * f.per_group[1])


def test_the_row_cut_lowers_the_floor_of_a_vit_read_at_its_first_token():
    ctx, _ = _context("vit", True)
    f = flops_floor(ctx)
    sizes = ctx.model.hidden_sizes
    assert f.rows_cut
    assert all(a < b for a, b in zip(f.per_group, f.without_row_cut))
    assert all(p < f.full for p in f.without_row_cut)
    assert f.speedup(sizes) > f.speedup(sizes, row_cut=False) > 1


def test_an_mlp_context_is_refused_by_name():
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    ctx = shrinknet.PruningContext.start(net, torch.randn(3, 5), torch.randint(0, 2, (3,)))
    with pytest.raises(shrinknet.ShrinkNetError, match="ctx: expected a context of a GatedModel"):
        flops_floor(ctx)
