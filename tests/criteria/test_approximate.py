import numpy as np

import shrinknet
from shrinknet.criteria.approximate import BruteForceSubset, BruteForceTopK

from ..conftest import random_data, random_net


def test_subset_with_every_sample_is_exact_and_a_share_is_scaled():
    m = random_net([5, 4], seed=1)
    X, T = random_data(n=50, seed=1)
    exact = shrinknet.score(m, X, T, "brute-force")
    full = shrinknet.score(m, X, T, BruteForceSubset(fraction=1.0))
    for a, b in zip(exact, full):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # 10 samples: the scores are the exact ones on those samples, times 50 / 10
    crit = BruteForceSubset(fraction=0.2, seed=3)
    part = shrinknet.score(m, X, T, crit)
    idx = crit.indices(50).numpy()
    ref = shrinknet.score(m, X[idx], T[idx], "brute-force")
    for a, b in zip(part, ref):
        np.testing.assert_allclose(a, 5 * b, rtol=1e-12)


def test_topk_with_k_covering_everything_equals_exact_serial_pruning():
    m = random_net([5, 4], seed=2)
    X, T = random_data(seed=2)
    exact = shrinknet.prune(m, X, T, "brute-force")
    approx = shrinknet.prune(m, X, T, BruteForceTopK(k=9, refresh=1000))
    assert approx.removed == exact.removed


def test_topk_first_step_is_exact_and_refresh_rescores_everything():
    m = random_net([6, 5], seed=4)
    X, T = random_data(seed=4)
    exact = shrinknet.prune(m, X, T, "brute-force", stop=3)
    r = shrinknet.prune(m, X, T, BruteForceTopK(k=1, refresh=1), stop=3)  # refresh every step = exact
    assert r.removed == exact.removed
    r = shrinknet.prune(m, X, T, BruteForceTopK(k=3, refresh=100), stop=4)
    assert r.removed[0] == exact.removed[0]
    assert r.predicted[0] == np.float64(exact.predicted[0])


def test_registered_names_run():
    m = random_net([5, 4], seed=1)
    X, T = random_data(seed=1)
    for name in ("brute-force-subset", "brute-force-topk"):
        assert shrinknet.prune(m, X, T, name).n_removed == 9


def test_topk_rescoring_uses_the_runs_compensation():
    m = random_net([5, 4], seed=2)
    X, T = random_data(seed=2)
    exact = shrinknet.prune(m, X, T, "brute-force", compensation="lstsq")
    approx = shrinknet.prune(m, X, T, BruteForceTopK(k=9, refresh=1000), compensation="lstsq")
    assert approx.removed == exact.removed
