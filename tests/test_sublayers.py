"""Whole transformer sublayers as units (``units=["blocks"]``, :mod:`shrinknet.sublayers`): found on
BERT (post-LN), LLaMA-style and GPT-2 (pre-LN); the gate against zeroing the branch by hand; the
oracle against one full pass per sublayer; pruning and shrinking (outputs equal the gated model's,
parameters drop by exactly the removed branches'); mean compensation against its definition; saving;
criteria that mean nothing refused by name; every sublayer removed.

Tiny models in float64 (width 16, 2 layers, 6 positions, 12 samples), built by tests/test_transformers.py.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import shrinknet  # noqa: E402
from shrinknet import GatedModel, ShrinkNetError, Stop, shrink, sublayers  # noqa: E402
from tests.test_transformers import E, FFN, bert, encoder, encoder_data, gpt2, llama, logits  # noqa: E402
from tests.test_transformers import bert_data as _bert_data  # noqa: E402
from tests.test_transformers import lm_data as _lm_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

T = 6                                          # positions
KV = 8                                         # LLaMA's key / value width: 2 KV heads x head_dim 4


def bert_data():
    return _bert_data(n=12, length=T)


def lm_data():
    return _lm_data(n=12, length=T)


MODELS = {
    "bert": dict(make=lambda: bert().double(), data=bert_data, names=[
        "bert.encoder.layer.0.attention:sublayer", "bert.encoder.layer.0.output:sublayer",
        "bert.encoder.layer.1.attention:sublayer", "bert.encoder.layer.1.output:sublayer"],
        # q, k, v and output.dense with biases; intermediate.dense and output.dense
        params=[4 * (E * E + E), 2 * E * FFN + FFN + E] * 2),
    "llama": dict(make=lambda: llama().double(), data=lm_data, names=[
        "model.layers.0.self_attn:sublayer", "model.layers.0.mlp:sublayer",
        "model.layers.1.self_attn:sublayer", "model.layers.1.mlp:sublayer"],
        # q_proj and o_proj E x E, k_proj and v_proj E x 8 (grouped KV), no biases; gate, up, down
        params=[2 * E * E + 2 * E * KV, 3 * E * FFN] * 2),
    "gpt2": dict(make=lambda: gpt2().double(), data=lm_data, names=[
        "transformer.h.0.attn:sublayer", "transformer.h.0.mlp:sublayer",
        "transformer.h.1.attn:sublayer", "transformer.h.1.mlp:sublayer"],
        params=[E * 3 * E + 3 * E + E * E + E, 2 * E * FFN + FFN + E] * 2),
}
TOL = dict(rtol=1e-10, atol=1e-10)


def first(X):
    return {k: v[:1] for k, v in X.items()} if isinstance(X, dict) else X[:1]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def branch_outputs(model, gm, X):
    """{gate_at module: its output on X} of the bare model (the branches' un-gated outputs)."""
    got, mods = {}, dict(model.named_modules())
    hs = [mods[u.gate_at].register_forward_hook(lambda m, a, o, n=u.gate_at: got.setdefault(n, o.detach()))
          for u in gm.units]
    try:
        logits(model, X)
    finally:
        for h in hs:
            h.remove()
    return got


def replaced(model, X, values: dict):
    """The bare model's logits with the output of each named module replaced by values[name] (D,)."""
    mods = dict(model.named_modules())
    hs = [mods[n].register_forward_hook(lambda m, a, o, v=v: torch.zeros_like(o) + v) for n, v in values.items()]
    try:
        return logits(model, X)
    finally:
        for h in hs:
            h.remove()


# ---- finding and gating ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
def test_blocks_are_every_layers_attention_and_mlp_branch(kind):
    spec = MODELS[kind]
    X, _ = spec["data"]()
    gm = GatedModel(spec["make"](), units=["blocks"], example_input=X)
    assert gm.unit_names == spec["names"]
    assert gm.hidden_sizes == [1, 1, 1, 1]
    assert [u.kind for u in gm.units] == ["sublayer"] * 4
    assert [u.branch.dim for u in gm.units] == [E] * 4


def test_the_branches_end_where_the_residual_add_begins():
    X, _ = bert_data()
    b = {u.name: u.branch for u in GatedModel(bert(), units=["blocks"], example_input=X).units}
    att, ffn = b["bert.encoder.layer.0.attention:sublayer"], b["bert.encoder.layer.0.output:sublayer"]
    # post-LN: the branch is output.dense's output, before the add and the LayerNorm (which stay)
    assert att.gate_at == "bert.encoder.layer.0.attention.output.dense"
    assert att.replace == ("bert.encoder.layer.0.attention.self", "bert.encoder.layer.0.attention.output.dense")
    assert ffn.replace == ("bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.0.output.dense")
    X, _ = lm_data()
    b = {u.name: u.branch for u in GatedModel(llama(), units=["blocks"], example_input=X).units}
    assert b["model.layers.1.self_attn:sublayer"].replace == ("model.layers.1.self_attn",)
    assert b["model.layers.1.mlp:sublayer"].gate_at == "model.layers.1.mlp.down_proj"


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_gate_scales_the_branch_output_before_the_residual_add(kind):
    spec = MODELS[kind]
    X, _ = spec["data"]()
    model = spec["make"]()
    gm = GatedModel(model, units=["blocks"], example_input=X)
    assert torch.allclose(gm(X), logits(model, X), **TOL)
    out = branch_outputs(model, gm, X)
    gm.set_gate(1, 0, 0.0)
    gm.set_gate(2, 0, 0.25)
    mods = dict(model.named_modules())
    hs = [mods[gm.units[1].gate_at].register_forward_hook(lambda m, a, o: o * 0.0),
          mods[gm.units[2].gate_at].register_forward_hook(lambda m, a, o: o * 0.25)]
    want = logits(model, X)
    for h in hs:
        h.remove()
    assert torch.allclose(gm(X), want, **TOL)
    assert not torch.allclose(gm(X), logits(model, X), rtol=1e-3, atol=1e-3)      # it matters
    assert out[gm.units[0].gate_at].shape == (12, T, E)


def test_one_sublayer_can_be_named():
    X, _ = lm_data()
    gm = GatedModel(llama(), units=["model.layers.1.mlp:sublayer"], example_input=X)
    assert gm.unit_names == ["model.layers.1.mlp:sublayer"]
    with pytest.raises(ShrinkNetError, match="no sublayer named 'model.layers.7.mlp:sublayer'"):
        GatedModel(llama(), units=["model.layers.7.mlp:sublayer"], example_input=X)


# ---- the oracle and the criteria ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("compensation", ["none", "mean"])
def test_oracle_equals_one_full_pass_per_sublayer(kind, compensation):
    spec = MODELS[kind]
    X, y = spec["data"]()
    ctx = shrinknet.PruningContext.start(spec["make"](), X, y, units=["blocks"], compensation=compensation)
    E0 = float(ctx.error())
    for state in ("as built", "one removed"):
        if state == "one removed":
            ctx.remove(1, 0)
        for l in range(4):
            if float(ctx.model.gates[l][0]) == 0:
                continue
            fast = shrinknet.oracle.errors_without(ctx, l, [0])
            slow = shrinknet.oracle.literal_errors(ctx, l, [0])
            assert torch.allclose(fast, slow, rtol=1e-9, atol=0), (state, l, fast, slow)
            assert abs(float(slow) - E0) > 1e-3 * E0                           # a sublayer that matters


@pytest.mark.parametrize("name", ["taylor1", "taylor2", "taylor2-exact", "fisher", "random", "mean-activation",
                                  "activation-variance", "brute-force"])
def test_criteria_that_act_through_the_gate_score_every_sublayer(name):
    X, y = lm_data()
    scores = shrinknet.score(llama().double(), X, y, criterion=name, units=["blocks"])
    assert len(scores) == 4 and all(s.shape == (1,) and torch.isfinite(torch.as_tensor(s)).all() for s in scores)


def test_mean_activation_is_the_mean_absolute_branch_output():
    X, y = lm_data()
    model = llama().double()
    gm = GatedModel(model, units=["blocks"], example_input=X)
    out = branch_outputs(model, gm, X)
    scores = shrinknet.score(model, X, y, criterion="mean-activation", units=["blocks"])
    want = [float(out[u.gate_at].abs().mean()) for u in gm.units]
    assert [float(s[0]) for s in scores] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", ["l1-in", "l2-in", "l1-out", "l2-out", "apoz"])
def test_criteria_that_mean_nothing_for_a_sublayer_are_refused_by_name(name):
    X, y = lm_data()
    with pytest.raises(ShrinkNetError, match=f"criterion: '{name}' .*sublayer"):
        shrinknet.prune(llama(), X, y, name, units=["blocks"], stop=Stop(n_units=1))


def test_lstsq_and_blocks_with_other_units_are_refused_by_name():
    X, y = lm_data()
    with pytest.raises(ShrinkNetError, match="compensation 'lstsq': a whole sublayer"):
        shrinknet.prune(llama(), X, y, "brute-force", units=["blocks"], compensation="lstsq")
    for other in ("heads", "ffn"):
        with pytest.raises(ShrinkNetError, match="units: whole sublayers .* cannot be pruned together"):
            shrinknet.prune(llama(), X, y, "brute-force", units=["blocks", other])


# ---- pruning and shrinking ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("criterion", ["brute-force", "taylor2"])
def test_shrunk_model_equals_the_gated_one_and_loses_exactly_the_branches(kind, criterion):
    spec = MODELS[kind]
    X, y = spec["data"]()
    model = spec["make"]()
    result = shrinknet.prune(model, X, y, criterion, units=["blocks"], stop=Stop(n_units=2))
    assert result.n_removed == 2
    gone = [l for l, g in enumerate(result.gates) if float(g[0]) == 0]
    small = shrink(model, result)
    assert torch.allclose(logits(small, X), result.model(X), **TOL)
    assert n_params(model) - n_params(small) == sum(spec["params"][l] for l in gone)
    stubs = [m for m in small.modules() if isinstance(m, sublayers.Removed)]
    assert stubs and all(not list(m.parameters()) and not m.fill.any() for m in stubs)
    assert n_params(model) == n_params(spec["make"]())                         # untouched


def test_brute_force_removes_the_sublayer_whose_removal_costs_least():
    X, y = lm_data()
    ctx = shrinknet.PruningContext.start(llama().double(), X, y, units=["blocks"])
    errors = [float(shrinknet.oracle.literal_errors(ctx, l, [0])) for l in range(4)]
    result = shrinknet.prune(llama().double(), X, y, "brute-force", units=["blocks"], stop=Stop(n_units=1))
    assert result.removed[0][0] == min(range(4), key=errors.__getitem__)
    assert result.errors[-1] == pytest.approx(min(errors), rel=1e-9)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_every_sublayer_removed_leaves_embeddings_norms_and_head(kind):
    spec = MODELS[kind]
    X, y = spec["data"]()
    model = spec["make"]()
    result = shrinknet.prune(model, X, y, "taylor2", units=["blocks"])
    assert result.n_removed == 4
    small = shrink(model, result)
    assert torch.allclose(logits(small, X), result.model(X), **TOL)
    assert n_params(model) - n_params(small) == sum(spec["params"])


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_mean_compensation_returns_the_branch_mean_output(kind):
    spec = MODELS[kind]
    X, y = spec["data"]()
    model = spec["make"]()
    gm = GatedModel(model, units=["blocks"], example_input=X)
    out = branch_outputs(model, gm, X)
    result = shrinknet.prune(model, X, y, "brute-force", units=["blocks"], compensation="mean", stop=Stop(n_units=1))
    l = result.removed[0][0]
    mean = out[gm.units[l].gate_at].reshape(-1, E).mean(0)          # over samples and positions
    want = replaced(model, X, {gm.units[l].gate_at: mean})
    assert torch.allclose(result.model(X), want, **TOL)
    assert not torch.allclose(want, replaced(model, X, {gm.units[l].gate_at: 0 * mean}), rtol=1e-4, atol=1e-4)
    small = shrink(result.model, result)
    assert torch.allclose(logits(small, X), want, **TOL)
    assert torch.allclose(small.get_submodule(gm.units[l].branch.replace[-1]).fill, mean, **TOL)


# ---- saving and cost ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_shrunk_model_saves_and_loads_into_a_template(kind, tmp_path):
    spec = MODELS[kind]
    X, y = spec["data"]()
    model = spec["make"]()
    result = shrinknet.prune(model, X, y, "brute-force", units=["blocks"], compensation="mean", stop=Stop(n_units=2))
    small = shrink(result.model, result)
    path = shrinknet.save_model(small, tmp_path / "small.safetensors", example_input=first(X))
    template = type(model)(model.config)
    back = shrinknet.load_model(path, template=template)
    assert torch.equal(logits(back, X), logits(small, X))
    assert sorted(sublayers.stubs(back)) == sorted(sublayers.stubs(small)) and len(sublayers.stubs(back)) >= 2
    assert not sublayers.stubs(template)                                       # the template is untouched


def test_a_file_naming_a_missing_module_as_removed_is_refused(tmp_path):
    X, y = lm_data()
    model = llama().double()
    small = shrink(model, shrinknet.prune(model, X, y, "brute-force", units=["blocks"], stop=Stop(n_units=1)))
    path = shrinknet.save_model(small, tmp_path / "small.safetensors")
    with pytest.raises(ShrinkNetError, match="not a module of the template"):
        sublayers.restore(llama(), {"model.layers.9.mlp": {"dim": E, "outputs": 0}}, "model file x")
    with pytest.raises(ShrinkNetError, match="expected"):
        sublayers.restore(llama(), {"model.layers.0.mlp": {"dim": "big", "outputs": 0}}, "model file x")
    assert shrinknet.load_model(path, template=llama()) is not None


def test_cost_is_the_branch_parameters_and_its_projections_flops():
    X, _ = lm_data()
    model = llama().double()
    gm = GatedModel(model, units=["blocks"], example_input=X)
    att, mlp = (sublayers.cost(model, u.branch, X) for u in gm.units[:2])
    assert att == {"params": 2 * E * E + 2 * E * KV, "flops": 2 * T * (2 * E * E + 2 * E * KV)}
    assert mlp == {"params": 3 * E * FFN, "flops": 2 * T * 3 * E * FFN}


def test_torch_transformer_encoder_loses_sublayers_and_still_runs_on_its_own():
    """nn.TransformerEncoder reads its layers' self_attn settings before running them: the stub keeps
    them (its tensors read as None, so torch takes the plain path that calls the stub)."""
    X, y = encoder_data()
    model = encoder().double()
    X = X.double()
    result = shrinknet.prune(model, X, y, "brute-force", units=["blocks"], stop=Stop(n_units=3))
    assert result.model.unit_names == ["0.layers.0.self_attn:sublayer", "0.layers.0.linear1:sublayer",
                                       "0.layers.1.self_attn:sublayer", "0.layers.1.linear1:sublayer"]
    small = shrink(model, result)
    with torch.no_grad():
        assert torch.allclose(small(X), result.model(X), **TOL)       # torch's own call, fast path allowed
