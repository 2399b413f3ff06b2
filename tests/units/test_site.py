"""What FFN neurons and heads share (shrinknet.units.site): a block of the consumer's input columns per unit."""
import torch

from shrinknet.blocks import Rows, Site
from shrinknet.units import Unit
from shrinknet.units.ffn import FFN


def _unit(size=2, block=2):
    site = Site("ffn", "p", size, block, (Rows("p", block),), "c")
    return Unit("p", "ffn", size, "c", ("p",), site)


def test_the_gate_multiplies_each_unit_s_block_of_columns():
    u = _unit()
    assert (u.on_input, u.block, u.channel_dim) == (True, 2, -2)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert FFN.gate(u, x, torch.tensor([1.0, 0.0])).tolist() == [[1, 2, 0, 0], [5, 6, 0, 0]]
    rows = torch.tensor([[0.0, 1.0], [1.0, 0.5]])
    assert FFN.gate(u, x, rows).tolist() == [[0, 0, 3, 4], [5, 6, 3.5, 4]]


def test_under_compensation_a_gate_moves_the_columns_by_their_residual():
    u = _unit()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mean = torch.tensor([0.5, 0.5, 1.0, 1.0])
    # switched off, unit 1's columns become their mean; unit 0's stay
    assert FFN.gate(u, x, torch.tensor([1.0, 0.0]), (mean, None)).tolist() == [[1, 2, 1, 1]]
    M = torch.zeros(5, 4)
    M[4] = torch.tensor([0.0, 0.0, 3.0, 4.0])                 # r = [x, 1] @ M: the constant (0, 0, 3, 4)
    assert FFN.gate(u, x, torch.tensor([1.0, 0.0]), (None, M)).tolist() == [[1, 2, 0, 0]]


def test_outputs_plans_and_weights_are_the_unit_s_columns():
    u = _unit()
    x = torch.arange(8.0).reshape(2, 4)
    assert FFN.observe(u, x).tolist() == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert FFN.plan(u) == [{"c": [0, 1]}, {"c": [2, 3]}]
    p, c = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    with torch.no_grad():
        p.weight.copy_(torch.arange(12.0).reshape(4, 3))
        c.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert FFN.fan_in(u, {"p": p, "c": c}).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert FFN.fan_out(u, {"p": p, "c": c}).tolist() == [[1, 2], [3, 4]]
