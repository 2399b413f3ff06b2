"""Whole sublayers as units (shrinknet.units.sublayer): the gate on the branch, no weights of their own,
stubs saved and restored; shrinknet.sublayers is the same module under its older name."""
import pytest
import torch
from torch import nn

import shrinknet.sublayers
from shrinknet import ShrinkNetError
from shrinknet.units import KINDS, Unit
from shrinknet.units import sublayer as sub


def _unit(name="m.mlp:sublayer", dim=3):
    return Unit(name, "sublayer", 1, "m.mlp.down", ("m.mlp.down",), None, sub.Branch("mlp", name, "m.mlp.down", dim,
                                                                                        ("m.mlp",)))


def test_the_gate_blends_the_branch_with_what_a_removed_one_returns():
    u = _unit()
    assert (u.on_input, u.block, u.channel_dim, sub.SUBLAYER.fill_size(u)) == (False, 3, -2, 3)
    out = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])          # (B, T, D)
    fill = torch.tensor([10.0, 20.0, 30.0])
    assert sub.SUBLAYER.gate(u, out, torch.tensor([0.0]), None, fill).tolist() == [[[10, 20, 30]]] * 2
    rows = torch.tensor([[1.0], [0.5]])
    assert sub.SUBLAYER.gate(u, out, rows, None, fill).tolist() == [[[1, 2, 3]], [[7, 12.5, 18]]]
    # under compensation an active branch's mean is added to what it would return
    mean = torch.tensor([1.0, 1.0, 1.0])
    assert sub.SUBLAYER.gate(u, out, torch.tensor([0.0]), (mean, None), fill)[0].tolist() == [[11, 21, 31]]
    assert sub.SUBLAYER.observe(u, out).shape == (2, 1, 1, 3)
    assert sub.SUBLAYER.plan(u) == [{}]


def test_a_sublayer_has_no_weights_of_its_own_and_goes_alone():
    u = _unit()
    with pytest.raises(ShrinkNetError, match="fan_in: 'm.mlp:sublayer' is a whole sublayer"):
        sub.SUBLAYER.fan_in(u, {})
    with pytest.raises(ShrinkNetError, match="fan_out: 'm.mlp:sublayer' is a whole sublayer"):
        sub.SUBLAYER.fan_out(u, {})
    other = Unit("fc", "linear", 2, "fc", ("fc",))
    sub.SUBLAYER.check_together([u, _unit("m.attn:sublayer")])
    with pytest.raises(ShrinkNetError, match="units: whole sublayers \\('blocks', e.g. 'm.mlp:sublayer'\\) cannot be "
                                             "pruned together with other units \\(e.g. 'fc'\\)"):
        sub.SUBLAYER.check_together([u, other])


def test_stubs_are_recorded_and_put_back_into_a_template():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3))
    assert sub.SUBLAYER.save_meta(model) == {}
    model[1] = sub.Removed(3, 2)
    assert sub.SUBLAYER.save_meta(model) == {"removed_sublayers": {"1": {"dim": 3, "outputs": 2}}}
    template = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3))
    sub.SUBLAYER.load_meta(template, {"removed_sublayers": '{"1": {"dim": 3, "outputs": 2}}'}, "model file f")
    assert isinstance(template[1], sub.Removed) and (template[1].dim, template[1].outputs) == (3, 2)
    y, none = template[1](torch.ones(4, 3))
    assert torch.equal(y, torch.zeros(4, 3)) and none is None
    sub.SUBLAYER.load_meta(template, {}, "model file f")                  # nothing recorded: nothing done


def test_the_older_module_name_is_the_same_module():
    assert shrinknet.sublayers.Removed is sub.Removed and shrinknet.sublayers.cut is sub.cut
    assert shrinknet.sublayers.SUBLAYER is KINDS["sublayer"]
    assert set(sub.__all__) <= set(dir(shrinknet.sublayers))
