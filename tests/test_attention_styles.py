"""Attention styles are one registry that finding, cutting and saving read: a new style is one entry."""
import math

import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import blocks


class TinyAttention(nn.Module):
    """Heads with their own names for everything (no known style has these)."""

    def __init__(self, width=8, n_heads=2):
        super().__init__()
        self.n_heads, self.size = n_heads, width // n_heads
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        B, T, _ = x.shape
        split = (lambda t: t.view(B, T, self.n_heads, self.size).transpose(1, 2))
        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.size), -1) @ v
        return self.wo(a.transpose(1, 2).reshape(B, T, self.n_heads * self.size))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.head = TinyAttention(), nn.Linear(8, 3)

    def forward(self, x):
        return self.head((x + self.attn(x)).mean(1))


def _tiny_site(name, m):
    if not isinstance(m, TinyAttention):
        return None
    join = (lambda p: f"{name}.{p}" if name else p)
    d, H = m.size, m.n_heads
    return blocks.Site("heads", name, H, d, tuple(blocks.Rows(join(p), d) for p in ("wq", "wk", "wv")), join("wo"),
                       {"module": name, "heads": H, "kv": H, "head_dim": d, "style": "tiny"})


@pytest.fixture
def tiny_style():
    style = blocks.register_attention_style(blocks.AttentionStyle(
        "tiny", "TinyAttention wq/wk/wv/wo", _tiny_site, lambda H, K, d: {"n_heads": H}))
    yield style
    del blocks.ATTENTION_STYLES["tiny"]


def test_a_registered_style_is_found_cut_and_saved(tiny_style, tmp_path):
    torch.manual_seed(0)
    net = Net().double().eval()
    X, y = torch.randn(20, 5, 8, dtype=torch.float64), torch.randint(0, 3, (20,))
    r = shrinknet.prune(net, X, y, "brute-force", units=["heads"], stop=shrinknet.Stop(n_units=1), progress=False)
    assert r.unit_names == ["attn"] and r.n_removed == 1
    small = shrinknet.shrink(net, r)                     # cut by the site; its head count set by the style
    assert small.attn.n_heads == 1 and small.attn.wq.out_features == 4 and small.attn.wo.in_features == 4
    torch.testing.assert_close(small(X), r.model(X))
    assert blocks.head_counts(small) == {"attn": {"n_heads": 1}}
    path = shrinknet.save_model(small, tmp_path / "s.safetensors")
    back = shrinknet.load_model(path, template=Net().double())
    assert back.attn.n_heads == 1
    torch.testing.assert_close(back(X), small(X))


def test_without_the_style_the_module_is_named_as_unsupported():
    net = Net()
    with pytest.raises(shrinknet.ShrinkNetError, match=r"attention module 'attn' \(TinyAttention\) is not a "
                                                       r"supported attention implementation \(supported: q_proj"):
        shrinknet.GatedModel(net, units=["attn"], example_input=torch.randn(1, 5, 8))
