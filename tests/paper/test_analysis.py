import numpy as np

import shrinknet
from shrinknet import losses
from shrinknet.paper import analysis

from ..conftest import random_data, random_net


def test_gain_curve_is_exact_and_passes_through_start_and_removal():
    m = random_net([5, 4], seed=2)
    X, T = random_data(seed=2)
    gains = np.linspace(0, 3, 13)
    curve = analysis.gain_curve(m, X, T, 0, 3, gains)
    for a, e in zip(gains, curve):
        g = [x.clone() for x in m.gates]
        g[0][3] = a
        assert e == np.float64(losses.total(m.logits(X, g), T, "sigmoid", "sse").item()) or \
            abs(e - losses.total(m.logits(X, g), T, "sigmoid", "sse").item()) < 1e-10
    E0 = shrinknet.evaluate(m, X, T)["error"]
    bf = shrinknet.score(m, X, T, "brute-force")[0][3]
    assert abs(curve[4] - E0) < 1e-10 and abs(curve[0] - E0 - bf) < 1e-10  # gains[4] == 1


def test_gain_surfaces_use_the_state_before_each_removal():
    m = random_net([5, 4], seed=2)
    X, T = random_data(seed=2)
    r = shrinknet.prune(m, X, T, "brute-force")
    surf = analysis.gain_surfaces(m, X, T, r, every=3, gains=[0.0, 1.0])
    assert [s[0] for s in surf] == [0, 3, 6]
    for step, l, u, gains, errs in surf:
        before = r.initial_error if step == 0 else r.errors[step - 1]
        assert abs(errs[1] - before) < 1e-10 and abs(errs[0] - r.errors[step]) < 1e-10


def test_removable_and_layer_counts():
    r = shrinknet.PruneResult("x", "iterative", "sse", [2, 2], 10.0, 0.9, removed=[(1, 0), (0, 1), (1, 1)],
                              errors=[10.5, 10.9, 12.0], predicted=[0, 0, 0], accuracies=[0.9, 0.895, 0.7])
    assert analysis.removable(r, max_error_increase=0.1) == 2
    assert analysis.removable(r, max_accuracy_drop=0.01) == 2
    assert analysis.removable(r, max_accuracy_drop=0.5) == 3
    assert analysis.layer_counts(r) == [[0, 1], [1, 1], [1, 2]]


def test_flat_until_uses_the_runs_own_scale():
    r = shrinknet.PruneResult("x", "iterative", "sse", [4], 1.0, None, removed=[(0, i) for i in range(4)],
                              errors=[1.01, 1.04, 7.0, 101.0], predicted=[0] * 4)
    assert analysis.flat_until(r) == 2  # 1.04 - 1 <= 0.05 * 100 < 7.0 - 1


def test_oracle_agreement_is_total_for_the_oracle_itself_and_regret_is_never_negative():
    m = random_net([5, 4], seed=6)
    X, T = random_data(seed=6)
    exact = shrinknet.prune(m, X, T, "brute-force")
    a = analysis.oracle_agreement(m, X, T, exact)
    assert a["share"] == 1.0 and max(abs(x) for x in a["regret"]) < 1e-12
    t1 = shrinknet.prune(m, X, T, "taylor1")
    b = analysis.oracle_agreement(m, X, T, t1)
    assert b["share"] < 1.0 and min(b["regret"]) >= 0 and max(b["regret"]) > 0
    assert b["agrees"] == [r == 0 for r in b["regret"]]


def test_oracle_agreement_replays_with_the_runs_compensation():
    m = random_net([5, 4], seed=6)
    X, T = random_data(seed=6)
    exact = shrinknet.prune(m, X, T, "brute-force", compensation="mean")
    a = analysis.oracle_agreement(m, X, T, exact)
    assert a["share"] == 1.0 and max(abs(x) for x in a["regret"]) < 1e-12
