"""One evaluator per model kind, chosen once; lower layers take explicit arguments."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import finding
from shrinknet.context import PruningContext
from shrinknet.evaluators import DenseEvaluator, GeneralEvaluator, evaluator_for

SRC = Path(shrinknet.__file__).parent


def _net(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.Tanh(),
                              torch.nn.Linear(5, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    return net, X, torch.randint(0, 3, (40,), generator=g)


def test_the_evaluator_follows_the_model_kind_and_is_chosen_once():
    net, X, y = _net()
    mlp = shrinknet.MLP([4, 6, 3], "sigmoid", "softmax", seed=0, dtype=torch.float64)
    gm = shrinknet.GatedModel(net, example_input=X[:1])
    assert isinstance(evaluator_for(mlp), DenseEvaluator) and isinstance(evaluator_for(gm), GeneralEvaluator)
    ctx = PruningContext.start(net, X, y)
    ev = ctx.evaluator
    ctx.remove(0, 1)
    shrinknet.oracle.errors_without(ctx, 0, [0, 2])
    assert ctx.evaluator is ev                                  # one evaluator for the whole run
    assert ctx.fork().evaluator is not ev and type(ctx.fork().evaluator) is type(ev)


def test_run_state_is_typed_fields_not_string_keys():
    net, X, y = _net(1)
    ctx = PruningContext.start(net, X, y)
    shrinknet.oracle.errors_without(ctx, 0, [0, 1, 2])
    key, silent = ctx.evaluator.silent
    assert key == ctx.state_key() and [s.shape for s in silent] == [(6,), (5,)]
    assert ctx.state == {}                                      # the criteria's own store stays theirs
    mlp = shrinknet.MLP([4, 6, 3], "sigmoid", "sigmoid", seed=2, dtype=torch.float64)
    T = torch.rand(40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ctx = PruningContext.start(mlp, X, T)
    assert shrinknet.oracle.best(ctx) is not None or shrinknet.backend() == "torch"
    if shrinknet.backend() == "compiled":
        assert ctx.evaluator.stepper is not None and ctx.state == {}


def test_silent_units_score_the_current_error_exactly_and_the_store_follows_the_gates():
    net, X, y = _net(3)
    with torch.no_grad():
        net[0].weight[2].zero_(), net[0].bias[2].fill_(-1.0)       # relu(-1) = 0 on every sample: silent
    ctx = PruningContext.start(net, X, y)
    E0 = ctx.error()
    E = shrinknet.oracle.errors_without(ctx, 0, torch.arange(6))
    assert E[2] == E0                                          # exactly, no float rounding
    lit = shrinknet.oracle.literal_errors(ctx, 0, torch.arange(6))
    np.testing.assert_allclose(E.numpy(), lit.numpy(), rtol=1e-12)
    first = ctx.evaluator.silent[0]
    ctx.remove(0, 4)
    shrinknet.oracle.errors_without(ctx, 0, [0])
    assert ctx.evaluator.silent[0] != first                   # recomputed for the new gates


def test_compensated_oracle_equals_the_literal_definition_and_keeps_its_statistics():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
                     max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    bert = BertForSequenceClassification(cfg).double().eval()
    g = torch.Generator().manual_seed(1)
    X = {"input_ids": torch.randint(0, 50, (12, 6), generator=g)}
    y = torch.randint(0, 2, (12,), generator=g)
    for mode in ("mean", "lstsq"):
        ctx = PruningContext.start(bert, X, y, units=["ffn"], compensation=mode)
        units = torch.arange(ctx.model.hidden_sizes[0])
        fast = shrinknet.oracle.errors_without(ctx, 0, units)
        assert ctx.evaluator.stats[0] == ctx.state_key() and ctx.evaluator.residuals[0] == ctx.state_key()
        lit = shrinknet.oracle.literal_errors(ctx, 0, units)
        np.testing.assert_allclose(fast.numpy(), lit.numpy(), rtol=1e-9)
        assert ctx.model._residual == {}                       # compensation is on only inside the oracle's call


def test_a_gated_model_is_traced_once(monkeypatch):
    net, X, _ = _net()
    calls = []
    real = finding._trace
    monkeypatch.setattr(finding, "_trace", lambda *a, **k: calls.append(1) or real(*a, **k))
    gm = shrinknet.GatedModel(net, units=["0", "2"], example_input=X[:1])
    assert len(calls) == 1 and gm.batch_rows > 0 and len(gm.downstream) == 2


def _sources():
    return [(p, ast.parse(p.read_text())) for p in sorted(SRC.rglob("*.py")) if "paper" not in p.parts]


def test_no_module_asks_for_a_layered_flag():
    for path, tree in _sources():
        names = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
        names += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert "layered" not in names, path


def test_no_module_writes_private_fields_onto_another_module_s_objects():
    """``x._field = ...`` only where ``_field`` belongs to the writing module's own class (it also reads or
    writes ``self._field``): no module sets another's private state (as compensation and the oracle once
    set ``_residual`` and ``_vmap_ok`` on the model)."""
    found = []
    for path, tree in _sources():
        own = {a.attr for a in ast.walk(tree) if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name)
               and a.value.id == "self"}
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for a in ast.walk(t):
                    if (isinstance(a, ast.Attribute) and a.attr.startswith("_") and not a.attr.startswith("__")
                            and a.attr not in own):
                        found.append(f"{path.relative_to(SRC)}:{a.lineno} {ast.unparse(a)}")
    assert found == []


def test_stop_n_units_and_its_older_name():
    assert shrinknet.Stop(n_units=3) == shrinknet.Stop(n_neurons=3) == shrinknet.Stop(3) == shrinknet.Stop.coerce(3)
    assert shrinknet.Stop(n_units=3).n_neurons == 3 and shrinknet.Stop(n_neurons=3).n_units == 3
    assert shrinknet.Stop.coerce({"n_neurons": 2}).n_units == 2           # dicts an older run recorded
    with pytest.raises(shrinknet.ShrinkNetError, match="n_neurons is the older name of n_units"):
        shrinknet.Stop(n_units=2, n_neurons=3)
    with pytest.raises(shrinknet.ShrinkNetError, match="stop.n_units: expected a non-negative integer"):
        shrinknet.Stop(n_units=-1)
    net, X, y = _net(4)
    r = shrinknet.prune(net, X, y, "taylor1", stop=shrinknet.Stop(n_units=4), progress=False)
    assert r.n_removed == 4


def test_n_groups_counts_every_group():
    net, X, _ = _net()
    gm = shrinknet.GatedModel(net, units=["0", "2"], example_input=X[:1])
    assert gm.n_groups == gm.n_hidden_layers == 2
    assert shrinknet.MLP([3, 4, 5, 2]).n_groups == 2


def test_mlp_unit_outputs_over_chunks_equal_its_kept_pass():
    from shrinknet.oracle.cache import build
    m = shrinknet.MLP([4, 6, 5, 3], "tanh", "sigmoid", seed=1, dtype=torch.float64)
    m.set_gate(0, 2, 0.0)                                   # a removed unit's output still shows, un-gated
    X = torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kept = build(m, X).act
    got = {}
    for l, a in m.unit_outputs([(X[:7], None), (X[7:], None)]):
        got.setdefault(l, []).append(a)
    assert sorted(got) == [0, 1]
    for l in (0, 1):
        torch.testing.assert_close(torch.cat(got[l]), kept[l], rtol=0, atol=0)
    assert kept[0][:, 2].abs().sum() > 0 and kept[1].abs().sum() > 0
