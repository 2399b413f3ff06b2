"""The general oracle's fast passes (upstream replayed, last block cut to the rows the loss reads,
candidates looped or vmapped) against the literal definition, per attention style and on a CNN."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet.oracle import rows, upstream

from ..test_transformers import bert, bert_data, encoder, encoder_data, gpt2, llama, vit, vit_data, _ids


class FirstToken(nn.Module):
    """A classifier reading position 0 of a sequence model's output."""

    def __init__(self, body, width, classes):
        super().__init__()
        self.body, self.head = body, nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x)[:, 0])


def last_labelled(n, length, seed):
    """Token ids and labels with only the last position labelled (the others -100)."""
    ids = _ids(n, length, seed)
    y = torch.full((n, length), -100)
    y[:, -1] = _ids(n, 1, seed + 1)[:, 0]
    return ids, y


def encoder_first():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=True)
    return FirstToken(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), 16, 3).eval()


def cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                      nn.Linear(6 * 4 * 4, 3)).eval()
    with torch.no_grad():
        m[1].running_var.uniform_(0.5, 2.0)
        m[5].running_mean.uniform_(-0.3, 0.3)
    return m


# name: (model, X, y, units, the rows the loss reads or None where every row is read)
CASES = {
    "bert": lambda: (bert(), *bert_data(), ["ffn", "heads"], [0]),
    "gpt2": lambda: (gpt2(), *last_labelled(8, 7, 5), ["ffn", "heads"], [6]),
    "vit": lambda: (vit(), *vit_data(), ["ffn", "heads"], [0]),
    "llama": lambda: (llama(), *last_labelled(8, 6, 6), ["ffn", "heads"], [5]),
    "mha": lambda: (encoder_first(), *encoder_data(n=10), ["heads", "body.layers.0.linear1", "body.layers.1.linear1"],
                    [0]),
    "encoder-all-rows": lambda: (encoder(), *encoder_data(), ["heads"], None),
    "cnn": lambda: (cnn(), torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(7)),
                    torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(8)), None, None),
}


def _context(name, cut: bool):
    model, X, y, units, read = CASES[name]()
    ctx = shrinknet.PruningContext.start(model.double(), X, y, units=units)
    ctx.evaluator.vmap.choice.rows = cut
    return ctx, read


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("cut", [True, False], ids=["rows-cut", "all-rows"])
@pytest.mark.parametrize("how", [("loop", 1), ("vmap", 3)])
def test_every_candidate_error_equals_the_literal_definition(name, cut, how):
    ctx, read = _context(name, cut)
    with torch.no_grad():
        ctx.model.gates[0][1] = 0.0                       # a unit already removed upstream of the others
    choice = ctx.evaluator.vmap.choice
    for l, K in enumerate(ctx.model.hidden_sizes):
        choice.by_group[l] = how
        units = torch.arange(K)
        fast = shrinknet.oracle.errors_without(ctx, l, units)
        lit = shrinknet.oracle.literal_errors(ctx, l, units)
        np.testing.assert_allclose(fast.numpy(), lit.numpy(), rtol=1e-10, atol=1e-12)
        assert not torch.equal(lit, lit[:1].expand_as(lit))   # the candidates differ: a real test
    plans = [p for _, p in choice.row_plans.values()]
    if cut and read is not None:
        assert plans and all(p is not None for p in plans)
        assert all(p.rows.tolist() == read for p in plans)
    else:
        assert all(p is None for p in plans)


def test_the_row_cut_is_the_measured_choice_too():
    """With no forced choice, the run measures loop against vmap on the first candidates and keeps
    one; the errors are the literal ones either way."""
    ctx, _ = _context("bert", True)
    l = ctx.model.n_hidden_layers - 1
    K = ctx.model.hidden_sizes[l]
    fast = shrinknet.oracle.errors_without(ctx, l, torch.arange(K))
    assert ctx.evaluator.vmap.choice.by_group[l][0] in ("loop", "vmap")
    np.testing.assert_allclose(fast.numpy(), shrinknet.oracle.literal_errors(ctx, l, torch.arange(K)).numpy(),
                               rtol=1e-10, atol=1e-12)


class InPlaceAfter(nn.Module):
    """Writes into an upstream module's output in place, downstream of the gate."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 5), nn.Linear(5, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc1(x)
        g = torch.relu(self.fc2(h))
        h.mul_(2.0)                                   # the kept output of fc1, changed after the gate of fc2
        return self.fc3(g) + h[:, :3]


def test_a_pass_that_writes_into_a_replayed_output_falls_back_and_stays_exact():
    torch.manual_seed(0)
    X, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    ctx = shrinknet.PruningContext.start(InPlaceAfter().double(), X, y, units=["fc2"])
    units = torch.arange(6)
    fast = shrinknet.oracle.errors_without(ctx, 0, units)
    np.testing.assert_allclose(fast.numpy(), shrinknet.oracle.literal_errors(ctx, 0, units).numpy(), rtol=1e-12)
    assert ctx.evaluator.vmap.replay is False


def test_replay_skips_what_lies_upstream_of_the_gate():
    """The replayed pass runs no module that finished before the gate: with the first layer's weights
    then poisoned, the replayed output is still the recorded pass's, and the gate still acts."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    X = torch.randn(7, 4, dtype=torch.float64)
    gm = shrinknet.GatedModel(net, units=["2"], example_input=X[:1])
    want = gm(X)
    row = gm.gates[0] * torch.linspace(0, 1, 6, dtype=torch.float64)
    with gm.overriding({0: row}):
        want_off = gm(X)
    rec = upstream.record(gm, X)
    plan = rec.plan(*upstream.gate_module(gm, 0))
    assert set(plan) == {gm.model[0], gm.model[1], gm.model[2], gm.model[3]}
    with torch.no_grad():
        gm.model[0].weight.fill_(float("nan"))
    with rec.replaying(plan) as reset:
        reset()
        got = gm(X)
        reset()
        with gm.overriding({0: row}):
            got_off = gm(X)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got_off, want_off, rtol=0, atol=0)
    assert not torch.equal(got_off, got)


def test_no_row_cut_where_every_row_is_read():
    ctx, _ = _context("encoder-all-rows", True)
    Xb, Tb = next(iter(ctx.data.chunks(100)))
    assert rows.plan(ctx.model, Xb, Tb, ctx.loss, upstream.record(ctx.model, Xb)) is None


def test_other_labels_in_the_same_run_get_their_own_rows():
    """The rows read follow the labels: a context whose targets change keeps no stale row plan."""
    ctx, _ = _context("gpt2", True)
    l = ctx.model.n_hidden_layers - 1
    units = torch.arange(ctx.model.hidden_sizes[l])
    shrinknet.oracle.errors_without(ctx, l, units)
    T = ctx.T.clone()
    T[:, -2] = T[:, -1]                       # the second-to-last position labelled too
    T[:, -1] = -100 if T.dtype == torch.long else 0
    ctx.T = T
    fast = shrinknet.oracle.errors_without(ctx, l, units)
    np.testing.assert_allclose(fast.numpy(), shrinknet.oracle.literal_errors(ctx, l, units).numpy(),
                               rtol=1e-10, atol=1e-12)


def _plan(ctx):
    Xb, Tb = next(iter(ctx.data.chunks(10 ** 9)))
    return rows.plan(ctx.model, Xb, Tb, ctx.loss, upstream.record(ctx.model, Xb)), Xb


@pytest.mark.parametrize("name", ["vit", "bert", "gpt2", "llama", "mha"])
def test_the_last_attention_computes_the_read_rows_only(name):
    """A's scores, weighted sums and output projection run on the rows read: fewer FLOPs than with A in
    full, the same losses (the candidates' errors against the literal loop: the test above)."""
    from torch.utils.flop_counter import FlopCounterMode
    ctx, _ = _context(name, True)
    rp, Xb = _plan(ctx)
    assert rp is not None and rp.cut_attention
    assert rp.cut_queries is (name != "gpt2")          # GPT-2's queries come out of c_attn with the keys
    flops = {}
    for cut in (True, False):
        rp.cut_attention = cut
        with torch.no_grad(), rp.on(), FlopCounterMode(display=False) as fc:
            ctx.model(Xb)
        flops[cut] = fc.get_total_flops()
    assert flops[True] < flops[False]


def test_a_causal_model_read_before_its_last_position_runs_its_last_attention_in_full():
    """LLaMA under sdpa passes no mask (the kernel's causal flag instead), and that flag is off for a single
    query, which then attends to every key: at a middle row the attention cut would be wrong (as it is,
    forced), so the check refuses it; the rows are still cut after A. At the last row it is right and kept."""
    from ..test_transformers import llama as make
    model = make().double()
    model.config._attn_implementation = "sdpa"
    ids, _ = last_labelled(8, 7, 5)
    for pos, accepted in ((3, False), (6, True)):
        y = torch.full_like(ids, -100)
        y[:, pos] = ids[:, 0]
        ctx = shrinknet.PruningContext.start(model, ids, y, units=["ffn", "heads"])
        rp, Xb = _plan(ctx)
        assert rp is not None and rp.cut_attention is accepted and rp.rows.tolist() == [pos]
        rp.cut_attention = True
        with torch.no_grad():
            with rp.on():
                forced = ctx.model(Xb)[:, pos]
            diff = float((forced - ctx.model(Xb)[:, pos]).abs().max())
        assert diff < 1e-12 if accepted else diff > 1e-3
        for l, K in enumerate(ctx.model.hidden_sizes):
            units = torch.arange(K)
            np.testing.assert_allclose(shrinknet.oracle.errors_without(ctx, l, units).numpy(),
                                       shrinknet.oracle.literal_errors(ctx, l, units).numpy(), rtol=1e-10, atol=1e-12)


def test_gpt2s_lm_head_runs_on_the_read_rows_after_the_rows_went_back():
    """GPT-2's model reshapes the final norm's output by the sequence length, so the rows go back on every
    position after the last block, and the LM head is cut to the read rows once more."""
    from torch.utils.flop_counter import FlopCounterMode
    ctx, read = _context("gpt2", True)
    rp, Xb = _plan(ctx)
    head = ctx.model.model.lm_head
    assert rp.head is head and rp.last is not head
    seen = []
    with torch.no_grad(), rp.on(), FlopCounterMode(display=False) as fc:
        # after the plan's hooks: what the head got and what the model goes on with
        h = head.register_forward_hook(lambda m, a, out: seen.append((a[0].shape[1], out.shape[1])))
        try:
            ctx.model(Xb)
        finally:
            h.remove()
    assert seen == [(1, 7)]                      # one row in, back on the 7 positions out
    V, D = head.weight.shape
    rp.head = None
    with torch.no_grad(), rp.on(), FlopCounterMode(display=False) as full:
        ctx.model(Xb)
    assert full.get_total_flops() - fc.get_total_flops() == 2 * Xb.shape[0] * 6 * D * V


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_two_read_rows_inside_a_causal_model(name):
    """Rows 2 and 5 of 7 read: the eager attention of GPT-2 and LLaMA gets its causal mask as a tensor with
    a row per query, cut with the queries, so the attention cut holds there too, and stays exact."""
    from ..test_transformers import gpt2 as make_gpt2, llama as make_llama
    ids, _ = last_labelled(8, 7, 5)
    y = torch.full_like(ids, -100)
    y[:, 2], y[:, 5] = ids[:, 3], ids[:, 6]
    model = {"gpt2": make_gpt2, "llama": make_llama}[name]().double()
    ctx = shrinknet.PruningContext.start(model, ids, y, units=["ffn", "heads"])
    rp, _ = _plan(ctx)
    assert rp is not None and rp.cut_attention and rp.rows.tolist() == [2, 5]
    for l, K in enumerate(ctx.model.hidden_sizes):
        units = torch.arange(K)
        np.testing.assert_allclose(shrinknet.oracle.errors_without(ctx, l, units).numpy(),
                                   shrinknet.oracle.literal_errors(ctx, l, units).numpy(), rtol=1e-10, atol=1e-12)


def test_a_nested_plan_leaves_the_outer_ones_attention_cut_in_place():
    import transformers.modeling_utils as mu
    ctx, _ = _context("vit", True)
    rp, Xb = _plan(ctx)
    table = mu.ALL_ATTENTION_FUNCTIONS
    assert "get_interface" not in table.__dict__
    with rp.on():
        outer = table.__dict__["get_interface"]
        with rp.on():
            pass
        assert table.__dict__["get_interface"] is outer
    assert "get_interface" not in table.__dict__
