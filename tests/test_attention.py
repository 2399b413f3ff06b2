"""Removable-head attention: same numbers as torch.nn.MultiheadAttention, inside torch's transformer
layers too; keep_heads equals zeroing heads; the out_proj hook sees the heads; bad input."""
import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from shrinknet import ShrinkNetError
from shrinknet.attention import MultiheadAttention, replace_torch_attention

E, H, L, S, N = 8, 4, 5, 6, 3
TOL = dict(atol=1e-5, rtol=1e-5)


pytestmark = pytest.mark.usefixtures("one_thread")


def torch_mha(seed=0, embed_dim=E, num_heads=H, **kw):
    """A torch module with random non-zero weights and biases (torch initialises biases to 0)."""
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(embed_dim, num_heads, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return m.eval()


def inputs(batch_first, kdim=E, vdim=E, seed=1, tgt=L, src=S, batched=True):
    g = torch.Generator().manual_seed(seed)

    def t(length, width):
        if not batched:
            return torch.randn(length, width, generator=g)
        shape = (N, length, width) if batch_first else (length, N, width)
        return torch.randn(shape, generator=g)
    return t(tgt, E), t(src, kdim), t(src, vdim)


def attn_mask(kind, seed=2, tgt=L, src=S, n=N, heads=H):
    """Random masks; key 0 is never masked, so no row is masked entirely (that would be NaN)."""
    if kind is None:
        return None
    g = torch.Generator().manual_seed(seed)
    shape = (tgt, src) if kind.endswith("2d") else (n * heads, tgt, src)
    if kind.startswith("bool"):
        m = torch.rand(shape, generator=g) < 0.4
        m[..., 0] = False
        return m
    m = torch.randn(shape, generator=g)
    m[..., 1] = float("-inf")
    return m


def padding_mask(kind, n=N, src=S):
    if kind is None:
        return None
    m = torch.zeros(n, src, dtype=torch.bool)
    m[1, -2:] = True
    m[2, -1] = True
    if kind == "bool":
        return m
    return torch.zeros(n, src).masked_fill(m, float("-inf")) + torch.linspace(-0.5, 0.5, src)


def assert_same(a, b):
    assert (a[1] is None) == (b[1] is None)
    torch.testing.assert_close(a[0], b[0], **TOL)
    if a[1] is not None:
        torch.testing.assert_close(a[1], b[1], **TOL)


pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched"),
              pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")]
WEIGHTS = [dict(need_weights=False), dict(need_weights=True), dict(need_weights=True, average_attn_weights=False)]


# ---- same numbers as torch -----------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim, vdim, bias", [(E, E, True), (5, 7, True), (E, E, False)],
                         ids=["qkv-same", "kdim-vdim", "no-bias"])
@pytest.mark.parametrize("mask", [None, "bool2d", "float2d", "bool3d", "float3d"])
@pytest.mark.parametrize("kpm", [None, "bool", "float"])
def test_matches_torch(batch_first, kdim, vdim, bias, mask, kpm):
    ref = torch_mha(kdim=kdim, vdim=vdim, bias=bias, batch_first=batch_first)
    assert ref._qkv_same_embed_dim == (kdim == vdim == E)
    assert (ref.in_proj_bias is None) == (not bias)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(batch_first, kdim, vdim)
    kw = dict(attn_mask=attn_mask(mask), key_padding_mask=padding_mask(kpm))
    for w in WEIGHTS:
        got, want = ours(q, k, v, **kw, **w), ref(q, k, v, **kw, **w)
        assert_same(got, want)
        assert got[0].shape == ((N, L, E) if batch_first else (L, N, E))
    assert got[1].shape == (N, H, L, S)


def counting(monkeypatch, name):
    """Count the calls of torch.<name> (a fused kernel torch's modules call by that name)."""
    calls = []
    fn = getattr(torch, name)
    monkeypatch.setattr(torch, name, lambda *a, **k: calls.append(1) or fn(*a, **k))
    return calls


def test_non_contiguous_masks_match_torch():
    ref = torch_mha(batch_first=False)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(False)
    m3 = attn_mask("float3d").transpose(0, 2).contiguous().transpose(0, 2)
    kw = dict(attn_mask=m3, key_padding_mask=padding_mask("bool").T.contiguous().T)
    assert not m3.is_contiguous()
    for w in WEIGHTS:
        assert_same(ours(q, k, v, **kw, **w), ref(q, k, v, **kw, **w))


def test_self_attention_matches_torch_fused_kernel(monkeypatch):
    # one tensor as q, k and v, batch_first, eval, no grad: torch runs its fused kernel
    fused = counting(monkeypatch, "_native_multi_head_attention")
    ref = torch_mha(batch_first=True)
    ours = MultiheadAttention.from_torch(ref)
    x = inputs(True)[0]
    kpm = padding_mask("bool", src=L)
    with torch.no_grad():
        for w in WEIGHTS:
            assert_same(ours(x, x, x, **w), ref(x, x, x, **w))
            assert_same(ours(x, x, x, key_padding_mask=kpm, **w), ref(x, x, x, key_padding_mask=kpm, **w))
    assert len(fused) == 2 * len(WEIGHTS)


@pytest.mark.parametrize("mask", [None, "bool2d", "float3d"])
@pytest.mark.parametrize("kpm", [False, True])
def test_unbatched_input_matches_torch(mask, kpm):
    ref = torch_mha(kdim=5, vdim=7)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(True, 5, 7, batched=False)
    m = attn_mask(mask, n=1)
    pad = torch.tensor([False, False, False, False, True, True]) if kpm else None
    for w in WEIGHTS:
        got, want = ours(q, k, v, key_padding_mask=pad, attn_mask=m, **w), \
            ref(q, k, v, key_padding_mask=pad, attn_mask=m, **w)
        assert_same(got, want)
        assert got[0].shape == (L, E)
    assert got[1].shape == (H, L, S)


def causal(n):
    return nn.Transformer.generate_square_subsequent_mask(n)


@pytest.mark.parametrize("kpm", [None, "bool"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_is_causal_with_its_causal_mask_matches_torch(kpm, batch_first):
    ref = torch_mha(batch_first=batch_first)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(batch_first, src=L)
    kw = dict(attn_mask=causal(L), is_causal=True, key_padding_mask=padding_mask(kpm, src=L))
    for w in WEIGHTS:
        assert_same(ours(q, k, v, **kw, **w), ref(q, k, v, **kw, **w))
    # the hint changes nothing when the mask is causal
    torch.testing.assert_close(ours(q, k, v, **kw)[0], ours(q, k, v, **{**kw, "is_causal": False})[0], **TOL)


def test_is_causal_hint_replaces_a_non_causal_mask_where_torch_does():
    ref = torch_mha(batch_first=True)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(True, src=L)
    wrong = torch.zeros(L, L)          # attends everywhere; the hint says causal
    for w in WEIGHTS:
        got = ours(q, k, v, attn_mask=wrong, is_causal=True, **w)
        assert_same(got, ref(q, k, v, attn_mask=wrong, is_causal=True, **w))
    # without weights or padding torch applies a causal mask instead of the given one
    torch.testing.assert_close(ours(q, k, v, attn_mask=wrong, is_causal=True, need_weights=False)[0],
                               ref(q, k, v, attn_mask=causal(L), need_weights=False)[0], **TOL)
    # with weights torch uses the given mask, so the wrong hint does not make it causal
    assert not torch.allclose(ours(q, k, v, attn_mask=wrong, is_causal=True)[0],
                              ref(q, k, v, attn_mask=causal(L))[0], atol=1e-3)


@pytest.mark.parametrize("tgt", [L, 3])
def test_is_causal_without_a_mask_applies_the_causal_mask(tgt):
    # torch raises here; this module applies the mask the hint names (top-left aligned when L != S)
    ref = torch_mha(batch_first=True)
    ours = MultiheadAttention.from_torch(ref)
    q, k, v = inputs(True, tgt=tgt)
    mask = ~torch.ones(tgt, S, dtype=torch.bool).tril()
    for w in WEIGHTS:
        assert_same(ours(q, k, v, is_causal=True, **w), ref(q, k, v, attn_mask=mask, **w))
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        ref(q, k, v, is_causal=True)


def test_training_mode_without_dropout_matches_torch_and_gradients_agree():
    ref = torch_mha(batch_first=True).train()
    ours = MultiheadAttention.from_torch(ref)
    assert ours.training
    q, k, v = (t.requires_grad_() for t in inputs(True))
    kw = dict(attn_mask=attn_mask("bool2d"), key_padding_mask=padding_mask("bool"))
    for w in WEIGHTS:
        got, want = ours(q, k, v, **kw, **w), ref(q, k, v, **kw, **w)
        assert_same(got, want)
        g_ours = torch.autograd.grad(got[0].square().sum(), (q, k, v))
        g_ref = torch.autograd.grad(want[0].square().sum(), (q, k, v))
        for a, b in zip(g_ours, g_ref):
            torch.testing.assert_close(a, b, **TOL)
    grads = torch.autograd.grad(ours(q, k, v)[0].sum(), [ours.q_proj.weight, ours.out_proj.bias])
    ref_grads = torch.autograd.grad(ref(q, k, v)[0].sum(), [ref.in_proj_weight, ref.out_proj.bias])
    torch.testing.assert_close(grads[0], ref_grads[0][:E], **TOL)
    torch.testing.assert_close(grads[1], ref_grads[1], **TOL)


def test_dropout_acts_on_the_weights_in_training_mode_only():
    p = 0.5
    ref = torch_mha(batch_first=True, dropout=p)
    ours = MultiheadAttention.from_torch(ref)
    assert ours.dropout == p
    q, k, v = inputs(True)
    kw = dict(need_weights=True, average_attn_weights=False)
    clean = ours(q, k, v, **kw)
    torch.manual_seed(0)
    out, w = ours.train()(q, k, v, **kw)
    dropped = w == 0
    assert 0.3 < dropped.float().mean() < 0.7
    # kept weights are scaled by 1 / (1 - p), and the output uses exactly the returned weights
    torch.testing.assert_close(w[~dropped], clean[1][~dropped] / (1 - p), **TOL)
    with torch.no_grad():
        ctx = (w @ ours.v_proj(v).view(N, S, H, -1).transpose(1, 2)).transpose(1, 2).reshape(N, L, E)
        torch.testing.assert_close(out, ours.out_proj(ctx), **TOL)
    # with the same seed torch draws the same dropout masks (on the CPU)
    ref.train()
    for w in WEIGHTS:
        torch.manual_seed(7)
        got = ours(q, k, v, **w)
        torch.manual_seed(7)
        assert_same(got, ref(q, k, v, **w))
        assert not torch.allclose(got[0], clean[0])
    ours.eval()
    assert_same(ours(q, k, v, **kw), clean)


# ---- inside torch's transformer modules --------------------------------------------------------
def encoder(batch_first=True, num_layers=2, dropout=0.0, norm=None):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(E, H, 16, dropout=dropout, batch_first=batch_first)
    return nn.TransformerEncoder(layer, num_layers, norm=norm, enable_nested_tensor=batch_first).eval()


def test_encoder_with_swapped_attention_equals_the_original_under_no_grad(monkeypatch):
    fused = counting(monkeypatch, "_transformer_encoder_layer_fwd")
    ref = encoder()
    ours = copy.deepcopy(ref)
    assert replace_torch_attention(ours) == ["layers.0.self_attn", "layers.1.self_attn"]
    assert all(isinstance(layer.self_attn, MultiheadAttention) for layer in ours.layers)
    assert ours.use_nested_tensor is False
    x = torch.randn(N, L, E, generator=torch.Generator().manual_seed(4))
    kpm = padding_mask("bool", src=L)
    seen = []
    ours.layers[1].self_attn.out_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    with torch.no_grad():
        want = ref(x)
        assert len(fused) == 2                          # torch ran its fused layers
        torch.testing.assert_close(ours(x), want, **TOL)
        assert len(fused) == 2 and seen == [(N, L, E)]  # the swapped layers ran this module
        torch.testing.assert_close(ours(x, mask=causal(L)), ref(x, mask=causal(L)), **TOL)
        torch.testing.assert_close(ours(x, mask=causal(L), is_causal=True), ref(x, mask=causal(L)), **TOL)
        got, want = ours(x, src_key_padding_mask=kpm), ref(x, src_key_padding_mask=kpm)
    # torch's nested-tensor path writes 0 at padded positions, its unfused path (and this module) does not
    torch.testing.assert_close(got[~kpm], want[~kpm], **TOL)
    assert torch.all(want[kpm] == 0)


@pytest.mark.parametrize("train, grad, batch_first", [(False, False, True), (False, True, False),
                                                       (True, False, False), (True, True, True)])
def test_encoder_and_decoder_layers_run_in_every_mode(train, grad, batch_first):
    torch.manual_seed(5)
    enc = encoder(batch_first, norm=nn.LayerNorm(E))
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, 16, dropout=0.0, batch_first=batch_first), 2)
    refs = (enc.train(train), dec.train(train))
    enc2, dec2 = copy.deepcopy(enc), copy.deepcopy(dec)
    replace_torch_attention(enc2)
    assert replace_torch_attention(dec2) == [f"layers.{i}.{n}" for i in range(2)
                                             for n in ("self_attn", "multihead_attn")]
    assert enc2.training == train and all(m.training == train for m in dec2.modules())
    g = torch.Generator().manual_seed(6)
    src = torch.randn(N, L, E, generator=g) if batch_first else torch.randn(L, N, E, generator=g)
    tgt = torch.randn(N, 3, E, generator=g) if batch_first else torch.randn(3, N, E, generator=g)
    kpm = padding_mask("bool", src=L)
    with torch.set_grad_enabled(grad):
        for e, d, r in ((enc2, dec2, False), (*refs, True)):
            mem = e(src, src_key_padding_mask=kpm)
            out = d(tgt, mem, tgt_mask=causal(3), tgt_is_causal=True, memory_key_padding_mask=kpm)
            if r:
                want_mem, want = mem, out
            else:
                got_mem, got = mem, out
    assert got.requires_grad == grad
    keep = ~kpm if batch_first else ~kpm.T
    torch.testing.assert_close(got_mem[keep], want_mem[keep], **TOL)
    torch.testing.assert_close(got, want, **TOL)
    if grad:
        got.sum().backward()
        assert enc2.layers[0].self_attn.q_proj.weight.grad is not None


def test_encoder_built_around_the_module_reads_its_attributes():
    layer = nn.TransformerEncoderLayer(E, H, 16, dropout=0.0, batch_first=True)
    layer.self_attn = MultiheadAttention.from_torch(layer.self_attn)
    assert layer.self_attn._qkv_same_embed_dim is False and layer.self_attn.in_proj_weight is None
    torch.testing.assert_close(layer.self_attn.in_proj_bias,
                               torch.cat([layer.self_attn.q_proj.bias, layer.self_attn.k_proj.bias,
                                          layer.self_attn.v_proj.bias]))
    with pytest.warns(UserWarning, match="_qkv_same_embed_dim was not True"):
        enc = nn.TransformerEncoder(layer, 2).eval()
    assert enc.use_nested_tensor is False
    x = torch.randn(N, L, E)
    with torch.no_grad():
        assert enc(x, src_key_padding_mask=padding_mask("bool", src=L)).shape == (N, L, E)
    assert MultiheadAttention(E, H, bias=False).in_proj_bias is None


# ---- heads ---------------------------------------------------------------------------------------
def zero_heads_hook(removed, head_dim):
    def hook(module, args):
        x = args[0].clone()
        for h in removed:
            x[..., h * head_dim:(h + 1) * head_dim] = 0
        return (x,)
    return hook


@pytest.mark.parametrize("keep", [[0, 2, 3], [1], [0, 1, 2, 3]])
@pytest.mark.parametrize("batch_first", [True, False])
def test_keep_heads_equals_zeroing_the_removed_heads(keep, batch_first):
    ref = torch_mha(kdim=5, vdim=7, batch_first=batch_first)
    zeroed = MultiheadAttention.from_torch(ref)
    zeroed.out_proj.register_forward_pre_hook(zero_heads_hook(sorted(set(range(H)) - set(keep)), E // H))
    pruned = MultiheadAttention.from_torch(ref)
    assert pruned.keep_heads(keep) is pruned
    assert (pruned.num_heads, pruned.head_dim, pruned.embed_dim) == (len(keep), E // H, E)
    d = len(keep) * (E // H)
    assert pruned.q_proj.weight.shape == (d, E) and pruned.k_proj.weight.shape == (d, 5)
    assert pruned.v_proj.bias.shape == (d,) and pruned.out_proj.weight.shape == (E, d)
    assert pruned.q_proj.out_features == d and pruned.out_proj.in_features == d
    q, k, v = inputs(batch_first, 5, 7)
    kw = dict(attn_mask=attn_mask("bool2d"), key_padding_mask=padding_mask("float"))
    for w in WEIGHTS:
        torch.testing.assert_close(pruned(q, k, v, **kw, **w)[0], zeroed(q, k, v, **kw, **w)[0], **TOL)
    # the weights are the kept heads' weights; the average is over the kept heads
    per_head = zeroed(q, k, v, **kw, need_weights=True, average_attn_weights=False)[1][:, keep]
    torch.testing.assert_close(pruned(q, k, v, **kw, need_weights=True, average_attn_weights=False)[1],
                               per_head, **TOL)
    torch.testing.assert_close(pruned(q, k, v, **kw)[1], per_head.mean(1), **TOL)


def test_keep_heads_twice_composes_and_keeps_the_scaling():
    ref = torch_mha(batch_first=True)
    once = MultiheadAttention.from_torch(ref).keep_heads([1, 3])
    twice = MultiheadAttention.from_torch(ref).keep_heads([1, 2, 3]).keep_heads([0, 2])
    q, k, v = inputs(True)
    assert_same(twice(q, k, v), once(q, k, v))
    # a 3-D mask counts the present heads
    m = attn_mask("float3d", heads=2)
    assert_same(twice(q, k, v, attn_mask=m), once(q, k, v, attn_mask=m))
    zeroed = MultiheadAttention.from_torch(ref)
    zeroed.out_proj.register_forward_pre_hook(zero_heads_hook([0, 2], E // H))
    torch.testing.assert_close(once(q, k, v)[0], zeroed(q, k, v)[0], **TOL)


def test_keep_heads_keeps_hooks_and_requires_grad():
    ours = MultiheadAttention.from_torch(torch_mha(batch_first=True))
    ours.k_proj.weight.requires_grad_(False)
    seen = []
    ours.out_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    ours.keep_heads([0, 3])
    assert not ours.k_proj.weight.requires_grad and ours.q_proj.weight.requires_grad
    ours(*inputs(True))
    assert seen == [(N, L, 2 * (E // H))]


def test_out_proj_pre_hook_sees_the_head_major_context():
    for batch_first, batched in ((True, True), (False, True), (True, False)):
        ref = torch_mha(batch_first=batch_first)
        ours = MultiheadAttention.from_torch(ref)
        seen = []
        ours.out_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
        q, k, v = inputs(batch_first, batched=batched)
        out, w = ours(q, k, v, need_weights=True, average_attn_weights=False)
        assert len(seen) == 1
        ctx = seen[0]
        assert ctx.shape == ((N, L, E) if batched else (L, E))
        torch.testing.assert_close(ours.out_proj(ctx), out if batch_first or not batched else out.transpose(0, 1))
        # head h's columns are its weights times its values
        d = E // H
        vals = ours.v_proj(v if batch_first or not batched else v.transpose(0, 1))
        for h in range(H):
            want = w[..., h, :, :] @ vals[..., h * d:(h + 1) * d] if batched else w[h] @ vals[:, h * d:(h + 1) * d]
            torch.testing.assert_close(ctx[..., h * d:(h + 1) * d], want, **TOL)
        torch.testing.assert_close(out, ref(q, k, v)[0], **TOL)


@pytest.mark.parametrize("kw", [{}, dict(kdim=5, vdim=7, bias=False, batch_first=True, dropout=0.1)])
def test_constructor_draws_the_weights_torch_draws(kw):
    torch.manual_seed(9)
    ref = nn.MultiheadAttention(E, H, **kw)
    torch.manual_seed(9)
    ours = MultiheadAttention(E, H, **kw)
    after = torch.rand(1)
    # from_torch draws nothing: the global random stream is where it was
    torch.manual_seed(9)
    nn.MultiheadAttention(E, H, **kw)
    copied = MultiheadAttention.from_torch(ref)
    assert torch.equal(torch.rand(1), after)
    mine, theirs = ours.state_dict(), copied.state_dict()
    assert list(mine) == list(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    for m in (ours, copied):
        assert (m.dropout, m.batch_first, m.kdim, m.vdim) == (ref.dropout, ref.batch_first, ref.kdim, ref.vdim)
        assert m.q_proj.weight.device.type == "cpu" and m.training
        assert_same(m.eval()(*inputs(ref.batch_first, ref.kdim, ref.vdim)),
                    ref.eval()(*inputs(ref.batch_first, ref.kdim, ref.vdim)))
    if ref.in_proj_bias is not None:
        assert torch.all(ours.in_proj_bias == 0) and torch.all(ours.out_proj.bias == 0)


# ---- bad input ----------------------------------------------------------------------------------
def test_refuses_add_bias_kv_and_add_zero_attn():
    with pytest.raises(ShrinkNetError, match="add_bias_kv=False.*got add_bias_kv=True"):
        MultiheadAttention.from_torch(nn.MultiheadAttention(E, H, add_bias_kv=True))
    with pytest.raises(ShrinkNetError, match="add_zero_attn=False.*got add_zero_attn=True"):
        MultiheadAttention.from_torch(nn.MultiheadAttention(E, H, add_zero_attn=True))
    with pytest.raises(ShrinkNetError, match="^add_bias_kv: expected False"):
        MultiheadAttention(E, H, add_bias_kv=True)
    with pytest.raises(ShrinkNetError, match="^add_zero_attn: expected False"):
        MultiheadAttention(E, H, add_zero_attn=True)
    with pytest.raises(ShrinkNetError, match="^mha: expected a torch.nn.MultiheadAttention, got Linear"):
        MultiheadAttention.from_torch(nn.Linear(2, 2))
    with pytest.raises(ShrinkNetError, match="^num_heads: expected a divisor of embed_dim=8, got 3"):
        MultiheadAttention(E, 3)
    with pytest.raises(ShrinkNetError, match="^embed_dim: expected a positive integer, got 0"):
        MultiheadAttention(0, 1)


@pytest.mark.parametrize("idx, msg", [
    ([], r"expected at least one head to keep \(of 4\), got none"),
    ([0, 4], r"expected head indices in \[0, 4\), got \[4\]"),
    ([-1, 2], r"expected head indices in \[0, 4\), got \[-1\]"),
    ([1, 1], r"expected sorted, distinct head indices, got \[1, 1\]"),
    ([2, 0], r"expected sorted, distinct head indices, got \[2, 0\]"),
    ([0.0], r"expected integer head indices, got 0.0"),
    ([True], r"expected integer head indices, got True"),
    (3, r"expected a sequence of head indices, got int"),
])
def test_keep_heads_refuses_bad_indices_and_changes_nothing(idx, msg):
    ours = MultiheadAttention.from_torch(torch_mha())
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ShrinkNetError, match="^idx: " + msg):
        ours.keep_heads(idx)
    assert ours.num_heads == H
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())


def test_keep_heads_accepts_numpy_and_tensor_indices():
    a = MultiheadAttention.from_torch(torch_mha()).keep_heads(np.array([0, 2]))
    b = MultiheadAttention.from_torch(torch_mha()).keep_heads(torch.tensor([0, 2]))
    assert a.num_heads == b.num_heads == 2
    torch.testing.assert_close(a.q_proj.weight, b.q_proj.weight)


@pytest.mark.parametrize("call, msg", [
    (lambda m, q, k, v: m(q, k, v, attn_mask=torch.zeros(L, L)),
     r"^attn_mask: expected shape \(5, 6\) or \(12, 5, 6\)"),
    (lambda m, q, k, v: m(q, k, v, key_padding_mask=torch.zeros(N, L, dtype=torch.bool)),
     r"^key_padding_mask: expected shape \(3, 6\), got \(3, 5\)"),
    (lambda m, q, k, v: m(q, k, v, attn_mask=torch.zeros(L, S, dtype=torch.int64)),
     r"^attn_mask: expected a bool or floating-point mask, got dtype torch.int64"),
    (lambda m, q, k, v: m(q, k[:, :, :4], v), r"^key: expected last dimension 8, got shape \(3, 6, 4\)"),
    (lambda m, q, k, v: m(q, k, v[:, :4]), r"^value: expected the sequence and batch dimensions of key"),
    (lambda m, q, k, v: m(q[0], k, v), r"^key: expected a 2-D tensor like query, got 3-D"),
    (lambda m, q, k, v: m(q[None], k, v), r"^query: expected a 2-D \(unbatched\) or 3-D tensor, got 4-D"),
])
def test_forward_names_the_bad_argument(call, msg):
    ours = MultiheadAttention.from_torch(torch_mha(batch_first=True))
    with pytest.raises(ShrinkNetError, match=msg):
        call(ours, *inputs(True))


def test_nested_input_is_refused_with_the_remedy():
    ours = MultiheadAttention.from_torch(torch_mha(batch_first=True))
    x = torch.nested.nested_tensor([torch.randn(2, E), torch.randn(3, E)])
    with pytest.raises(ShrinkNetError, match="^query: expected a dense tensor.*use_nested_tensor=False"):
        ours(x, x, x)


# ---- copies and swapping --------------------------------------------------------------------------
def test_survives_deepcopy_and_pickle():
    ours = MultiheadAttention.from_torch(torch_mha(kdim=5, vdim=7, batch_first=True)).keep_heads([0, 3]).train()
    q, k, v = inputs(True, 5, 7)
    want = ours(q, k, v)
    for other in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert other is not ours and other.training
        assert (other.num_heads, other.head_dim, other.kdim, other.vdim) == (2, E // H, 5, 7)
        assert_same(other(q, k, v), want)
        other.keep_heads([1])
        assert ours.num_heads == 2


def test_replace_torch_attention_keeps_device_dtype_mode_and_sharing():
    shared = nn.MultiheadAttention(E, H, batch_first=True)
    model = nn.ModuleDict({"a": shared, "b": nn.Sequential(nn.Linear(E, E), shared),
                           "c": nn.MultiheadAttention(E, 2, kdim=5, vdim=7)}).double()
    model["c"].eval()
    names = replace_torch_attention(model)
    assert names == ["a", "b.1", "c"]
    assert model["a"] is model["b"][1] and isinstance(model["a"], MultiheadAttention)
    assert model["a"].training and not model["c"].training
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert replace_torch_attention(model) == []


def test_replace_torch_attention_refusals_leave_the_model_unchanged():
    model = nn.Sequential(nn.MultiheadAttention(E, H), nn.MultiheadAttention(E, H, add_zero_attn=True))
    with pytest.raises(ShrinkNetError, match="add_zero_attn"):
        replace_torch_attention(model)
    assert all(type(m) is nn.MultiheadAttention for m in model)
    with pytest.raises(ShrinkNetError, match="^model: expected a module that contains"):
        replace_torch_attention(nn.MultiheadAttention(E, H))
    with pytest.raises(ShrinkNetError, match="^model: expected a torch nn.Module, got list"):
        replace_torch_attention([])
