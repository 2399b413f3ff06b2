import json

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import losses

from .conftest import random_data, random_net


def literal_greedy(m, X, T, loss, steps):
    """Serial brute force written out: try every remaining neuron, keep the best, repeat."""
    gates = [g.clone() for g in m.gates]
    order = []
    for _ in range(steps):
        best = None
        for l, g in enumerate(gates):
            for u in range(len(g)):
                if g[u] == 0:
                    continue
                trial = [x.clone() for x in gates]
                trial[l][u] = 0
                e = losses.total(m.logits(X, trial), T, m.output_activation, loss).item()
                if best is None or e < best[0]:
                    best = (e, l, u)
        gates[best[1]][best[2]] = 0
        order.append((best[1], best[2]))
    return order


@pytest.mark.parametrize("hidden,act,out", [([7], "sigmoid", "sigmoid"), ([5, 4], "tanh", "softmax"),
                                            ([4, 3, 4], "relu", "identity"), ([4, 5], "gelu", "sigmoid")])
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
def test_iterative_brute_force_follows_the_literal_greedy_loop(hidden, act, out, loss):
    m = random_net(hidden, act, out, seed=sum(hidden))
    X, T = random_data(seed=sum(hidden))
    r = shrinknet.prune(m, X, T, "brute-force", "iterative", loss=loss)
    assert r.removed == literal_greedy(m, X, T, loss, sum(hidden))
    # errors are the exact errors after each removal
    g = [torch.ones(k, dtype=torch.float64) for k in hidden]
    for (l, u), e, p in zip(r.removed, r.errors, r.actual_changes):
        g[l][u] = 0
        assert e == pytest.approx(losses.total(m.logits(X, g), T, out, loss).item(), rel=1e-12)
    # for brute force the prediction is the actual change
    np.testing.assert_allclose(r.predicted, r.actual_changes, rtol=1e-9, atol=1e-10)


def test_single_ranking_removes_in_initial_score_order():
    m = random_net([6, 5], seed=7)
    X, T = random_data(seed=7)
    s = np.concatenate(shrinknet.score(m, X, T, "taylor2"))
    idx = [(0, u) for u in range(6)] + [(1, u) for u in range(5)]
    r = shrinknet.prune(m, X, T, "taylor2", "single")
    assert r.removed == [idx[i] for i in np.argsort(s, kind="stable")]
    np.testing.assert_allclose(r.predicted, np.sort(s))


def test_ties_go_to_lowest_layer_then_unit():
    # identical hidden units in both layers: every score ties
    W = [np.ones((3, 2)), np.ones((3, 3)), np.ones((1, 3))]
    b = [np.zeros(3), np.zeros(3), np.zeros(1)]
    m = shrinknet.MLP.from_numpy(W, b, dtype=torch.float64)
    X, T = np.zeros((4, 2)), np.ones((4, 1))
    r = shrinknet.prune(m, X, T, lambda model, X, T, loss: [torch.zeros(3), torch.zeros(3)], "single")
    assert r.removed == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_no_stop_removes_everything_and_leaves_model_untouched():
    m = random_net([4, 3], seed=1)
    X, T = random_data(seed=1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = shrinknet.prune(m, X, T, "taylor1")
    assert r.n_removed == 7 and sorted(r.removed) == [(0, i) for i in range(4)] + [(1, i) for i in range(3)]
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all((np.asarray(g) == 0).all() for g in r.gates)
    assert r.keep() == {0: [], 1: []}


def test_inplace_writes_final_gates():
    m = random_net([4, 3], seed=1)
    X, T = random_data(seed=1)
    r = shrinknet.prune(m, X, T, "brute-force", stop=shrinknet.Stop(n_neurons=2), inplace=True)
    assert m.n_active() == 5 and [list(np.flatnonzero(g.numpy() == 0)) for g in m.gates] != [[], []]
    assert sum(len(v) for v in r.keep().values()) == 5


@pytest.mark.parametrize("stop,expected", [(shrinknet.Stop(n_neurons=3), 3), (shrinknet.Stop(fraction=0.5), 5),
                                           (shrinknet.Stop(fraction=0.5, n_neurons=2), 2), (4, 4),
                                           ({"fraction": 0.25}, 2), (shrinknet.Stop(n_neurons=0), 0)])
def test_count_stops(stop, expected):
    m = random_net([6, 5], seed=2)
    X, T = random_data(seed=2)
    assert shrinknet.prune(m, X, T, "taylor2", stop=stop).n_removed == expected


def _first(mask, default):
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else default


@pytest.mark.parametrize("criterion", ["brute-force", "taylor1"])
def test_accuracy_and_error_stops_keep_the_limit_and_stop_at_the_first_breach(criterion):
    m = random_net([8, 6], seed=3)
    X, T = random_data(n=60, seed=3)
    full = shrinknet.prune(m, X, T, criterion)
    breached = 0
    for drop in (0.0, 0.05, 0.2):
        r = shrinknet.prune(m, X, T, criterion, stop={"max_accuracy_drop": drop})
        first_bad = _first(full.initial_accuracy - np.array(full.accuracies) > drop + 1e-12, full.n_removed)
        assert r.n_removed == first_bad and r.removed == full.removed[:first_bad]
        assert all(full.initial_accuracy - a <= drop + 1e-12 for a in r.accuracies)
        breached += "accuracy" in r.stop_reason
    for rise in (0.0, 0.1, 1.0):
        r = shrinknet.prune(m, X, T, criterion, stop={"max_error_increase": rise})
        first_bad = _first(np.array(full.errors) > (1 + rise) * full.initial_error + 1e-12, full.n_removed)
        assert r.n_removed == first_bad and r.removed == full.removed[:first_bad]
        assert all(e <= (1 + rise) * full.initial_error + 1e-12 for e in r.errors)
        breached += "error" in r.stop_reason
    assert breached >= 2  # the limits really were hit, not just never reached


def test_test_set_is_tracked_and_results_round_trip(tmp_path):
    m = random_net([5, 4], seed=4)
    X, T = random_data(seed=4)
    Xt, Tt = random_data(n=20, seed=5)
    r = shrinknet.prune(m, X, T, "taylor2", test=(Xt, Tt), stop=3)
    assert len(r.test_errors) == len(r.test_accuracies) == 3
    assert r.initial_test_error == pytest.approx(shrinknet.evaluate(m, Xt, Tt)["error"])
    r.save_json(tmp_path / "r.json")
    r.save_csv(tmp_path / "r.csv")
    back = shrinknet.PruneResult.load_json(tmp_path / "r.json")
    assert back.removed == r.removed and back.errors == r.errors
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("step,layer,unit,predicted_change") and len(lines) == 5
    assert json.loads((tmp_path / "r.json").read_text())["criterion"] == "taylor2"


def test_regression_targets_have_no_accuracy():
    m = random_net([5], out="identity", n_out=1, seed=0)
    X, T = random_data(n_out=1, classes=False)
    r = shrinknet.prune(m, X, T.numpy()[:, 0], "brute-force", stop=2)
    assert r.accuracies is None and r.initial_accuracy is None
    with pytest.raises(shrinknet.ShrinkNetError, match="class targets"):
        shrinknet.prune(m, X, T, "brute-force", stop={"max_accuracy_drop": 0.1})


def test_integer_labels_are_one_hot_encoded():
    m = random_net([5])
    X, T = random_data()
    a = shrinknet.score(m, X, T, "taylor2", "sse")
    b = shrinknet.score(m, X, T.argmax(1).numpy(), "taylor2", "sse")
    np.testing.assert_allclose(a[0], b[0])


def test_custom_registered_criterion_is_used_by_name():
    @shrinknet.register_criterion("test-lowest-index-last", overwrite=True)
    def crit(model, X, T, loss):
        return [-torch.arange(k, dtype=torch.float64) for k in model.hidden_sizes]

    m = random_net([3, 2])
    X, T = random_data()
    assert shrinknet.prune(m, X, T, "test-lowest-index-last", "single").removed[:2] == [(0, 2), (0, 1)]


def test_sequential_model_is_accepted():
    seq = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Sigmoid()).double()
    X, T = random_data()
    r = shrinknet.prune(seq, X, T, "brute-force", stop=2)
    assert r.n_removed == 2 and r.hidden_sizes == [5]
