"""Budgets (``Stop(params=, flops=)``) and the cost-aware choice (``prune(cost=)``): the kept counts by
hand and against the shrunk model's own, the cost-aware order by hand, heads against neurons, the
exact oracle's fast step against the literal rule, resuming, refusals and the command line.

The hand-worked MLP is [3, 4, 6, 2]. With a0, a1 active neurons in its hidden layers, the model
shrink makes has P = 4 a0 + a0 a1 + 3 a1 + 2 parameters (3 a0 + a0 weights and biases in, a0 a1 + a1
between, 2 a1 + 2 out) and F = 2 (3 a0 + a0 a1 + 2 a1) FLOPs per sample: 60 and 96 whole. Removing a
neuron of layer 0 saves 4 + a1 parameters, 2 (3 + a1) FLOPs; one of layer 1 saves a0 + 3 and 2 (a0 + 2).
"""
import json

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import MLP, PruneResult, ShrinkNetError, Stop, prune, shrink, unit_costs
from shrinknet.budgets import Kept
from shrinknet.criteria import ranked
from shrinknet.stats import flops, n_params
from tests.conftest import image_data, random_data, random_net, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


def hand_mlp():
    return MLP([3, 4, 6, 2], seed=0, dtype=torch.float64)


def hand_data():
    return random_data(n=10, n_in=3, n_out=2)


#: fixed scores: layer 0, layer 1 (a criterion that ignores the model, so the order is worked out by hand)
SCORES = [[0.2, -0.5, 1.0, 0.6], [0.3, 0.0, 0.9, 0.12, 2.0, 0.45]]


def fixed(ctx):
    """The scores of SCORES (NaN where removed: the loop then leaves them out)."""
    return [torch.tensor(s, dtype=torch.float64) for s in SCORES]


def P(a0, a1):
    return 4 * a0 + a0 * a1 + 3 * a1 + 2


def F(a0, a1):
    return 2 * (3 * a0 + a0 * a1 + 2 * a1)


def test_kept_counts_of_an_mlp_by_hand():
    k = Kept(hand_mlp())
    assert k.total.tolist() == [60, 96] and k.kept.tolist() == [60, 96]
    assert k.saving.tolist() == [[4 + 6, 2 * (3 + 6)], [4 + 3, 2 * (4 + 2)]]
    k.remove(1)                                     # a1 = 5: a layer-0 neuron feeds one fewer
    assert k.kept.tolist() == [P(4, 5), F(4, 5)] == [53, 84]
    assert k.saving.tolist() == [[4 + 5, 2 * (3 + 5)], [4 + 3, 2 * (4 + 2)]]
    assert k.fraction() == (53 / 60, 84 / 96)
    # every unit gone: the output layer's bias alone, no product left
    assert k.lowest() == (P(0, 0) / 60, 0.0) == (2 / 60, 0.0)


def test_cost_aware_order_by_hand():
    # Worked out from SCORES and the savings in parameters (see the module's docstring):
    # -0.5 and 0.0 first (scores <= 0); then at (a0, a1) = (3, 5) a layer-0 neuron saves 9, a layer-1
    # one 6: 0.12 / 6 = 0.020 < 0.2 / 9 = 0.022 -> (1, 3); at (3, 4): 0.2 / 8 = 0.025 < 0.3 / 6 -> (0, 0);
    # at (2, 4): 0.3 / 5 = 0.06 < 0.6 / 8 -> (1, 0); at (2, 3): 0.6 / 7 = 0.086 < 0.45 / 5 -> (0, 3), where
    # by score alone 0.45 (1, 5) goes first; at (1, 3): 0.45 / 4 < 1.0 / 7 -> (1, 5); at (1, 2):
    # 1.0 / 6 < 0.9 / 4 -> (0, 2); then 0.9 / 3 < 2.0 / 3.
    order = [(0, 1), (1, 1), (1, 3), (0, 0), (1, 0), (0, 3), (1, 5), (0, 2), (1, 2), (1, 4)]
    counts = [(3, 6), (3, 5), (3, 4), (2, 4), (2, 3), (1, 3), (1, 2), (0, 2), (0, 1), (0, 0)]
    X, T = hand_data()
    for schedule in ("single", "iterative"):
        r = prune(hand_mlp(), X, T, fixed, schedule, cost="params")
        assert r.removed == order and r.cost == "params"
        assert r.params_total == 60 and r.flops_total == 96
        assert r.initial_params_kept == 60 and r.initial_flops_kept == 96
        assert r.params_kept == [P(*a) for a in counts] == [50, 44, 38, 30, 25, 18, 14, 8, 5, 2]
        assert r.flops_kept == [F(*a) for a in counts]
    plain = prune(hand_mlp(), X, T, fixed, "single")
    assert plain.removed == [(0, 1), (1, 1), (1, 3), (0, 0), (1, 0), (1, 5), (0, 3), (1, 2), (0, 2), (1, 4)]
    assert plain.params_kept is None and plain.rows()[1]["params_kept"] == ""
    # the rule itself, on scores with one unit removed (NaN): left out
    scores = [torch.tensor([0.2, np.nan, 1.0, 0.6]), torch.tensor([0.3, -0.1, 0.9, 0.12, 2.0, 0.45])]
    assert [p[:2] for p in ranked(scores, [9.0, 6.0])][:4] == [(1, 1), (1, 3), (0, 0), (1, 0)]


def test_a_budget_stops_at_the_first_removal_that_reaches_it_and_is_recorded():
    X, T = hand_data()
    r = prune(hand_mlp(), X, T, fixed, cost="params", stop=Stop(params=0.5))
    assert r.n_removed == 4 and r.params_kept[-1] == 30          # 30 / 60: the first at or below half
    assert r.stop_reason == "parameter budget reached (50.0% kept)"
    assert r.fraction_kept == {"params": 0.5, "flops": F(2, 4) / 96}
    # F: 96, 78, 68, 58, 44, 36, 24 -> 0.3 x 96 = 28.8 is first reached at the 6th removal
    r = prune(hand_mlp(), X, T, fixed, cost="params", stop=Stop(flops=0.3))
    assert r.n_removed == 6 and r.stop_reason == "FLOPs budget reached (25.0% kept)"
    rows = r.rows()
    assert rows[0]["params_kept"] == 1.0 and rows[0]["flops_kept"] == 1.0
    assert [row["flops_kept"] for row in rows[1:]] == [f / 96 for f in (78, 68, 58, 44, 36, 24)]
    # combined with other limits: the first met stops
    r = prune(hand_mlp(), X, T, fixed, cost="params", stop=Stop(n_units=2, flops=0.3))
    assert r.n_removed == 2 and r.stop_reason == "neuron count reached"
    # without a cost: the budget counts the order by score
    # (by score: P 50, 44, 38, 30, 25, then (1, 5) -> P(2, 2) = 20 > 18, then (0, 3) -> P(1, 2) = 14)
    r = prune(hand_mlp(), X, T, fixed, "single", stop=Stop(params=0.3))
    assert r.n_removed == 7 and r.params_kept[-1] == P(1, 2) == 14 and r.cost is None
    # a budget met before any removal: nothing removed
    m = hand_mlp()
    m.set_gate(0, 0, 0.0)
    m.set_gate(0, 1, 0.0)
    r = prune(m, X, T, fixed, stop=Stop(params=P(2, 6) / 60))
    assert r.n_removed == 0 and r.stop_reason.startswith("parameter budget reached")


def test_heads_and_neurons_compete_on_one_scale():
    from tests.test_transformers import E, FFN, bert, bert_data
    X, y = bert_data()
    gm = shrinknet.GatedModel(bert(), units=["heads", "ffn"], example_input=X)
    d = E // 4
    heads, ffn = unit_costs(gm)[:2]
    assert heads.params == 3 * (E * d + d) + E * d == 268 and ffn.params == E + 1 + E == 33

    def scores(ctx):
        # every head 5, every FFN neuron 1: by score a neuron goes first; per parameter saved a head
        # (5 / 268 = 0.019 < 1 / 33 = 0.030)
        return [torch.full((k,), 5.0 if "attention" in n else 1.0, dtype=torch.float64)
                for n, k in zip(ctx.model.unit_names, ctx.model.hidden_sizes)]
    plain = prune(gm, X, y, scores, stop=1)
    aware = prune(gm, X, y, scores, stop=1, cost="params")
    assert plain.removed == [(1, 0)] and aware.removed == [(0, 0)]
    assert aware.params_kept == [n_params(gm.model) - 268]


def _shrunk_counts(result, k, x):
    """(parameters, FLOPs) of the model shrink makes after the first k removals of ``result``."""
    gm = result.model.clone()
    gm.reset_gates()
    for l, u in result.removed[:k]:
        gm.set_gate(l, u, 0.0)
    small = shrink(gm, check=False)
    return n_params(small), flops(small, x)


def _mlp_case():
    X, T = random_data(n=20)
    return random_net([6, 5]), X, T, {}, X[:1]


def _cnn_case():
    X, T = image_data()
    return tiny_cnn(), X, T, {}, X[:1]


def _bert_case():
    from tests.test_transformers import bert, bert_data
    X, y = bert_data()
    return bert().double(), X, y, {"units": ["heads", "ffn"]}, {k: v[:1] for k, v in X.items()}


def _llama_case():
    from tests.test_transformers import lm_data, llama
    X, y = lm_data()
    return llama().double(), X, y, {"units": ["heads", "ffn"]}, X[:1]


def _gpt2_case():
    from tests.test_transformers import gpt2, lm_data
    X, y = lm_data()
    return gpt2().double(), X, y, {"units": ["heads", "ffn"]}, X[:1]


@pytest.mark.parametrize("case, empties", [(_mlp_case, False), (_cnn_case, False), (_bert_case, True),
                                           (_llama_case, True), (_gpt2_case, True)],
                         ids=["mlp", "cnn", "bert", "llama", "gpt2"])
def test_counted_kept_equals_what_shrink_makes(case, empties):
    # empties: whether shrink's model of every group emptied runs (an MLP / CNN layer cannot go whole:
    # it would disconnect the net; GPT-2's emptied Conv1D keeps one silent neuron, as attention keeps one
    # silent head); past that the count goes on as a layer of width 0
    model, X, T, kw, x = case()
    r = prune(model, X, T, "taylor1", cost="flops", **kw)
    assert r.n_removed == r.initially_active                     # every unit: groups emptied too
    assert (r.params_total, r.flops_total) == _shrunk_counts(r, 0, x)
    assert (r.params_total, r.flops_total) == (n_params(model), flops(model, x))
    for k in range(1, r.n_removed + 1):
        try:
            want = _shrunk_counts(r, k, x)
        except (ShrinkNetError, RuntimeError):
            assert not empties and k > r.n_removed // 2
            break
        assert (r.params_kept[k - 1], r.flops_kept[k - 1]) == want, k
    else:
        assert empties


@pytest.mark.parametrize("hidden, seed", [([7], 2), ([8, 3], 5), ([5, 4, 4], 4)])
def test_the_oracles_fast_step_picks_what_the_literal_rule_picks(hidden, seed, monkeypatch):
    # one hidden layer and two: the compiled step; three: the stepper's per-layer path
    from shrinknet.oracle.stepper import Stepper
    fast = []
    real = Stepper.best

    def counted(self, cache, costs=None):
        pick = real(self, cache, costs)
        fast.append(pick is not None)
        return pick
    monkeypatch.setattr(Stepper, "best", counted)
    X, T = random_data(n=30)
    m = random_net(hidden, seed=seed)
    orders = []
    for cost in ("flops", "params"):
        fast.clear()
        quick = prune(m, X, T, "brute-force", cost=cost)
        assert fast and all(fast)                              # every step by the stepper
        literal = prune(m, X, T, "brute-force-literal", cost=cost)
        assert quick.removed == literal.removed and quick.flops_kept == literal.flops_kept
        orders.append(quick.removed)
    if len(hidden) > 1:             # (one hidden layer: every neuron saves the same, so the order is the score's)
        plain = prune(m, X, T, "brute-force").removed
        assert any(o != plain for o in orders)                 # a cost changed the order


def test_a_budget_run_resumes_and_extends(tmp_path):
    X, T = random_data(n=20)
    m = random_net([6, 5])
    straight = prune(m, X, T, "brute-force", cost="flops", stop=Stop(flops=0.3))
    half = prune(m, X, T, "brute-force", cost="flops", stop=Stop(flops=0.6), checkpoint=tmp_path / "ck")
    assert 0 < half.n_removed < straight.n_removed and half.stop_reason.startswith("FLOPs budget reached")
    again = prune(m, X, T, "brute-force", cost="flops", stop=Stop(flops=0.6), checkpoint=tmp_path / "ck")
    assert again.resumed_steps == half.n_removed and again.removed == half.removed
    assert again.flops_kept == half.flops_kept and again.stop_reason == half.stop_reason
    longer = prune(m, X, T, "brute-force", cost="flops", stop=Stop(flops=0.3), checkpoint=tmp_path / "ck")
    assert longer.resumed_steps == half.n_removed
    assert longer.removed == straight.removed and longer.flops_kept == straight.flops_kept
    assert longer.errors == straight.errors and longer.stop_reason == straight.stop_reason
    # a run cut off after 2 steps (no end line) resumes to the same end
    lines = (tmp_path / "ck" / "steps.jsonl").read_text().splitlines()
    (tmp_path / "ck2").mkdir()
    (tmp_path / "ck2" / "fingerprint.json").write_text((tmp_path / "ck" / "fingerprint.json").read_text())
    (tmp_path / "ck2" / "steps.jsonl").write_text("\n".join(lines[:2]) + "\n")
    cut = prune(m, X, T, "brute-force", cost="flops", stop=Stop(flops=0.3), checkpoint=tmp_path / "ck2")
    assert cut.resumed_steps == 2 and cut.removed == straight.removed
    # the stop is recorded with the budget; another cost is another run
    end = [json.loads(s) for s in (tmp_path / "ck" / "steps.jsonl").read_text().splitlines() if '"end"' in s]
    assert end[-1]["stop"]["flops"] == 0.3 and end[-1]["stop"]["params"] is None
    with pytest.raises(ShrinkNetError, match="cost was 'flops', now 'params'"):
        prune(m, X, T, "brute-force", cost="params", stop=Stop(flops=0.3), checkpoint=tmp_path / "ck")
    with pytest.raises(ShrinkNetError, match="cost was 'flops', now None"):
        prune(m, X, T, "brute-force", stop=Stop(flops=0.3), checkpoint=tmp_path / "ck")


def test_a_budget_out_of_reach_is_refused_before_any_work(tmp_path):
    X, T = hand_data()
    with pytest.raises(ShrinkNetError, match=r"stop.params: removing every unit this run may remove keeps 0.0333 of "
                                             r"the model's parameters \(the lowest reachable\); expected a budget of "
                                             r"at least 0.0333, got 0.01"):
        prune(hand_mlp(), X, T, fixed, stop=Stop(params=0.01), checkpoint=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
    # only the heads may go: their FLOPs are the most a run can take
    from tests.test_transformers import bert, bert_data
    Xb, y = bert_data()
    model = bert()
    gm = shrinknet.GatedModel(model, units=["heads"], example_input=Xb)
    x1 = {k: v[:1] for k, v in Xb.items()}
    low = flops(shrink(gm, {n: [] for n in gm.unit_names}), x1) / flops(model, x1)
    with pytest.raises(ShrinkNetError, match=f"stop.flops: .* keeps {low:.4f} of the model's FLOPs per sample"):
        prune(model, Xb, y, "taylor1", units=["heads"], stop=Stop(flops=low - 0.01))
    r = prune(model, Xb, y, "taylor1", units=["heads"], stop=Stop(flops=low))
    # the last head of a layer saves nothing (shrink keeps one, silent): the 7th removal reaches it
    assert r.n_removed == 7 and r.flops_kept[-1] / r.flops_total == low
    assert [r.params_kept[i] - r.params_kept[i + 1] for i in range(6)].count(0) == 1


def test_stop_and_cost_checked_and_the_older_forms_kept():
    for bad, match in [(dict(params=1.5), r"stop.params: expected a number in \[0.0, 1.0\], got 1.5"),
                       (dict(flops=-0.1), r"stop.flops: expected a number in \[0.0, 1.0\], got -0.1"),
                       (dict(flops="half"), r"stop.flops: expected a number in \[0.0, 1.0\], got 'half'")]:
        with pytest.raises(ShrinkNetError, match=match):
            Stop(**bad)
    assert Stop(3).n_units == 3 and Stop(None, 0.5).fraction == 0.5 and Stop(n_neurons=4).n_units == 4
    assert Stop.coerce({"flops": 0.5}) == Stop(flops=0.5) and Stop(3, params=0.5).params == 0.5
    from shrinknet.pruning import _same_stop
    assert _same_stop({"n_units": 3, "fraction": None, "max_accuracy_drop": None, "max_error_increase": None,
                       "n_neurons": 3}, Stop(3))               # a checkpoint of a Stop without budgets
    X, T = hand_data()
    for bad in ("latency", 1, "FLOPS"):
        with pytest.raises(ShrinkNetError, match=f"cost: expected None, 'params' or 'flops' .*got {bad!r}"):
            prune(hand_mlp(), X, T, fixed, cost=bad)


def test_the_result_keeps_its_counts_in_json(tmp_path):
    X, T = hand_data()
    r = prune(hand_mlp(), X, T, fixed, cost="params", stop=Stop(params=0.5))
    r.save_json(tmp_path / "r.json")
    back = PruneResult.load_json(tmp_path / "r.json")
    assert back.params_kept == [50, 44, 38, 30] and back.flops_total == 96 and back.cost == "params"
    assert back.rows() == r.rows()


# ---- the command line ------------------------------------------------------------------------

def _trained(tmp_path):
    from shrinknet.cli import main
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "8", "6", "--epochs", "3", "--lr", "0.02",
                 "--out", str(model)]) == 0
    return model


def test_cli_budgets_and_cost(tmp_path, capsys):
    import csv
    from shrinknet.cli import main
    model = _trained(tmp_path)
    assert main(["--quiet", "prune", str(model), "--data", "diamond", "--criterion", "taylor1", "--keep-flops", "0.5",
                 "--cost", "flops", "--out", str(tmp_path / "p")]) == 0
    r = PruneResult.load_json(tmp_path / "p" / "result.json")
    assert r.cost == "flops" and r.stop_reason.startswith("FLOPs budget reached")
    assert r.flops_kept[-1] <= 0.5 * r.flops_total < r.flops_kept[-2]
    rows = list(csv.DictReader((tmp_path / "p" / "steps.csv").open()))
    assert float(rows[-1]["flops_kept"]) == r.flops_kept[-1] / r.flops_total and rows[0]["params_kept"] == "1.0"
    assert "of the FLOPs per sample" in capsys.readouterr().out
    assert main(["--quiet", "shrink", str(model), "--data", "diamond", "--criterion", "taylor1", "--keep-params", "0.6",
                 "--out", str(tmp_path / "s")]) == 0
    r = PruneResult.load_json(tmp_path / "s" / "result.json")
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert r.params_kept[-1] == report["after"]["params"] <= 0.6 * r.params_total and r.cost is None
    assert r.flops_kept[-1] == report["after"]["flops"] and r.flops_total == report["before"]["flops"]
    capsys.readouterr()
    # refused in one line, exit 2, nothing written
    assert main(["prune", str(model), "--data", "diamond", "--keep-params", "0.001", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stop.params:" in err and "lowest reachable" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as e:            # argparse's own refusal of a choice: one line, exit 2
        main(["prune", str(model), "--data", "diamond", "--cost", "latency", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cost" in err and not (tmp_path / "x").exists()
    assert main(["shrink", str(model), "--data", "diamond", "--out", str(tmp_path / "x")]) == 2
    assert "--keep-params or --keep-flops" in capsys.readouterr().err


def test_cli_help_says_fraction_counts_units_removed(capsys):
    from shrinknet.cli import main
    for cmd in ("prune", "shrink"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--keep-params" in out and "--keep-flops" in out and "--cost" in out
        unit = "neurons" if cmd == "prune" else "units"
        assert f"--fraction FRACTION stop after removing this fraction (0..1) of the {unit} (counted in {unit} " \
               f"removed)" in out


def test_a_budget_with_uniform_rounds_stops_after_the_round_that_reaches_it():
    model, X, y, kw, x = _llama_case()
    full = Stop(flops=1.0)
    r0 = shrinknet.prune(model, X, y, "l2-out", units=["ffn"], stop=full, uniform=True, progress=False)
    assert r0.n_removed == 0 and r0.fraction_kept["flops"] == 1.0
    want = 0.9
    r = shrinknet.prune(model, X, y, "l2-out", units=["ffn"], stop=Stop(flops=want), uniform=True, progress=False)
    layers = len(r.hidden_sizes)
    assert r.n_removed % layers == 0                      # whole rounds only: the same width in every layer
    assert len({len(v) for v in r.keep_by_name().values()}) == 1
    fl = [f / r.flops_total for f in r.flops_kept]
    assert fl[-1] <= want < fl[-1 - layers]               # the first whole round that reaches the budget
    assert (r.params_kept[-1], r.flops_kept[-1]) == _shrunk_counts(r, r.n_removed, x)
