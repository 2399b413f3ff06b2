"""Attention heads as units (shrinknet.units.heads): selected, cut with their counts, saved and restored."""
import pytest
import torch
from torch import nn

from shrinknet import ShrinkNetError, blocks
from shrinknet.attention import MultiheadAttention
from shrinknet.units.base import Trace
from shrinknet.units.heads import HEADS


class _Attn(nn.Module):
    """A q/k/v/o attention module (the "qkv" style): 2 heads of size 2 over width 4."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(4, 4) for _ in range(4))
        self.head_dim, self.num_heads = 2, 2

    def forward(self, x):
        q, k, v = (p(x).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o_proj(a.transpose(1, 2).flatten(2))


def test_removing_every_head_keeps_one_silent_head_and_its_count():
    m, x = _Attn(), torch.randn(3, 5, 4)
    site = blocks.attention_site("", m)
    unit = HEADS.unit("", Trace(m, [], None, [site], [], []))
    assert (unit.kind, unit.size, unit.block, unit.gate_at) == ("heads", 2, 2, "o_proj")
    HEADS.cut(m, unit, [])
    assert (m.num_heads, m.q_proj.out_features, m.o_proj.in_features) == (1, 2, 2)
    assert float(m.o_proj.weight.detach().abs().sum()) == 0.0
    assert torch.equal(m(x), m.o_proj.bias.expand(3, 5, 4))            # the residual branch gives its bias alone
    assert HEADS.shapes(m) == {"": {"num_heads": 1}}


def test_select_refuses_a_model_without_heads_or_with_attention_of_no_known_style():
    t = Trace(nn.Linear(1, 1), [], None, [], [], [])
    with pytest.raises(ShrinkNetError, match="units: 'heads' selects attention heads, but the model has no supported "
                                             "attention module$"):
        HEADS.select("heads", t)
    model = nn.Sequential(_Attn(), nn.Identity())
    t = Trace(model, [], None, [blocks.attention_site("0", model[0])], [], ["1"])
    with pytest.raises(ShrinkNetError, match="units: attention module '1' \\(Identity\\) is not a supported attention "
                                             "implementation; name the supported ones instead \\(e.g. '0'\\)"):
        HEADS.select("heads", t)


def test_torch_attention_is_swapped_and_the_swap_is_recorded_and_restored():
    model = nn.Sequential(nn.MultiheadAttention(4, 2, batch_first=True))
    assert HEADS.save_meta(model) == {}
    HEADS.prepare(model)
    assert isinstance(model[0], MultiheadAttention) and HEADS.save_meta(model) == {"multihead_attention": ["0"]}
    template = nn.Sequential(nn.MultiheadAttention(4, 2, batch_first=True))
    HEADS.load_meta(template, {"multihead_attention": '["0"]'}, "model file f")
    assert isinstance(template[0], MultiheadAttention)
    with pytest.raises(ShrinkNetError, match="model file f: module '0' is not an nn.MultiheadAttention of the template"):
        HEADS.load_meta(nn.Sequential(nn.Linear(1, 1)), {"multihead_attention": '["0"]'}, "model file f")


def test_a_template_without_the_head_count_is_refused_by_name():
    m = _Attn()
    resize = HEADS.resizer(m, "f")
    assert resize("", m, {"num_heads": 1}) is True and m.num_heads == 1
    assert resize("q_proj", m.q_proj, {"num_heads": 1}) is False                # not an attention module
    del m.num_heads
    with pytest.raises(ShrinkNetError, match="model file f: attention module '' of the template has no head count "
                                             "'num_heads'"):
        HEADS.resizer(_Attn(), "f")("", m, {"num_heads": 1})
