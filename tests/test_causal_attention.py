"""nanoGPT-style attention written by hand: its heads as units through shrinknet's drop-in."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shrinknet
from shrinknet import Stop, shrink
from shrinknet._validation import ShrinkNetError
from shrinknet.causal_attention import CausalSelfAttention, looks_like_nanogpt, replace_causal_attention
from shrinknet.finding import find_units
from shrinknet.gating import GatedModel

E, H, L, V, T = 16, 4, 2, 11, 6


class NanoAttention(nn.Module):
    """Written the way nanoGPT writes it: one c_attn, heads sized from the input width."""

    def __init__(self, flash=True, causal=True):
        super().__init__()
        self.c_attn = nn.Linear(E, 3 * E)
        self.c_proj = nn.Linear(E, E)
        self.attn_dropout = nn.Dropout(0.0)
        self.resid_dropout = nn.Dropout(0.0)
        self.n_head, self.n_embd, self.dropout = H, E, 0.0
        self.flash, self.causal = flash, causal
        self.register_buffer("bias", torch.tril(torch.ones(16, 16)).view(1, 1, 16, 16))

    def forward(self, x):
        B, t, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(B, t, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            if self.causal:
                att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            y = self.attn_dropout(F.softmax(att, dim=-1)) @ v
        y = y.transpose(1, 2).contiguous().view(B, t, C)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(E), nn.LayerNorm(E)
        self.attn = NanoAttention(**kw)
        self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(), nn.Linear(4 * E, E))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, seed=0, **kw):
        super().__init__()
        torch.manual_seed(seed)
        self.wte, self.wpe = nn.Embedding(V, E), nn.Embedding(16, E)
        self.h = nn.ModuleList(Block(**kw) for _ in range(L))
        self.ln_f = nn.LayerNorm(E)
        self.lm_head = nn.Linear(E, V, bias=False)
        self.wte.weight = self.lm_head.weight          # tied, as nanoGPT ties them

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x)), None        # (logits, loss) as nanoGPT returns without targets


def data(n=12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (n, T + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def logits(model, ids):
    with torch.no_grad():
        return model(ids)[0]


@pytest.mark.parametrize("flash", [True, False])
def test_the_drop_in_computes_what_nanogpts_module_computes(flash):
    model = NanoGPT(flash=flash)
    ids, _ = data()
    want = logits(model, ids)
    assert replace_causal_attention(model) == ["h.0.attn", "h.1.attn"]
    assert all(isinstance(b.attn, CausalSelfAttention) for b in model.h)
    assert model.h[0].attn.head_dim == E // H and model.h[0].attn.n_head == H
    torch.testing.assert_close(logits(model, ids), want, rtol=0, atol=1e-6)
    assert not any(looks_like_nanogpt(m) for m in model.modules())


def test_a_module_shaped_like_nanogpts_that_computes_something_else_is_refused_by_name():
    model = NanoGPT(causal=False)        # no causal mask: not nanoGPT's attention
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ShrinkNetError, match=r"'h.0.attn' \(NanoAttention\) is shaped like nanoGPT's"):
        replace_causal_attention(model)
    assert isinstance(model.h[0].attn, NanoAttention) and isinstance(model.h[1].attn, NanoAttention)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # pruning leaves it as it is, and refuses its heads by name
    ids, y = data()
    with pytest.raises(ShrinkNetError, match="attention modules of kinds it does not support: h.0.attn, h.1.attn"):
        shrinknet.score(model, ids, y, "l2-out", units=["heads"])


def test_heads_are_units_and_a_gate_of_zero_equals_zeroing_that_heads_context_columns():
    model = NanoGPT()
    ids, _ = data()
    units = {u.name: u for u in find_units(GatedModel(model, units=["heads"], example_input=ids).model, ids, ["heads"])}
    assert {n: (u.kind, u.size, u.block) for n, u in units.items()} == {
        "h.0.attn": ("heads", H, E // H), "h.1.attn": ("heads", H, E // H)}
    gm = GatedModel(model, units=["heads"], example_input=ids)
    g = torch.ones(H)
    g[2] = 0.0
    gm.set_gates([torch.ones(H), g])
    # by hand on the user's own module: head 2 of layer 1 reads c_proj's columns 8..11
    ref = NanoGPT()
    with torch.no_grad():
        ref.h[1].attn.c_proj.weight[:, 2 * 4:3 * 4] = 0.0
    want = logits(ref, ids)
    torch.testing.assert_close(gm(ids), want, rtol=0, atol=1e-6)
    assert not torch.allclose(want, logits(NanoGPT(), ids), atol=1e-4)


def test_prune_heads_then_shrink_equals_the_gated_model_and_keeps_the_users_model():
    model = NanoGPT()
    ids, y = data()
    result = shrinknet.prune(model, ids, y, "brute-force", units=["heads", "h.0.mlp.0"], stop=Stop(n_units=5))
    assert sum(len(v) for v in result.keep_by_name().values()) == 2 * H + 4 * E - 5
    small = shrink(model, result)
    kept = result.keep_by_name()
    for l in range(L):
        attn = small.h[l].attn
        k = max(1, len(kept[f"h.{l}.attn"]))
        assert isinstance(attn, CausalSelfAttention) and attn.n_head == k and attn.head_dim == E // H
        assert attn.c_attn.weight.shape == (3 * k * (E // H), E) and attn.c_proj.weight.shape == (E, k * (E // H))
    torch.testing.assert_close(logits(small, ids), result.model(ids), rtol=1e-5, atol=1e-6)
    ev = shrinknet.evaluate(small, ids, y)
    assert ev["error"] == pytest.approx(result.errors[-1], rel=1e-5)
    # the user's model is left as it was: its own attention class, all heads
    assert isinstance(model.h[0].attn, NanoAttention) and model.h[0].attn.c_attn.out_features == 3 * E


def test_save_and_load_with_the_users_class_as_template(tmp_path):
    model = NanoGPT()
    ids, y = data()
    result = shrinknet.prune(model, ids, y, "l2-out", units=["heads"], stop=Stop(n_units=3))
    small = shrink(model, result)
    path = shrinknet.save_model(small, tmp_path / "small.safetensors")
    back = shrinknet.load_model(path, template=NanoGPT(seed=5))
    assert [b.attn.n_head for b in back.h] == [b.attn.n_head for b in small.h]
    assert back.lm_head.weight is back.wte.weight
    torch.testing.assert_close(logits(back, ids), logits(small, ids), rtol=0, atol=0)


def test_the_drop_in_checks_its_arguments():
    with pytest.raises(ShrinkNetError, match=r"n_head: expected a divisor of n_embd=16"):
        CausalSelfAttention(16, 5)
    with pytest.raises(ShrinkNetError, match=r"x: expected shape \(batch, time, 16\), got \(2, 16\)"):
        CausalSelfAttention(16, 4)(torch.zeros(2, 16))
    with pytest.raises(ShrinkNetError, match=r"m: expected a nanoGPT-style CausalSelfAttention, got Linear"):
        CausalSelfAttention.from_nanogpt(nn.Linear(2, 2))
