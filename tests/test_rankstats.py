"""shrinknet.rankstats gives what scipy.stats.spearmanr / kendalltau give, without SciPy."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shrinknet import ShrinkNetError
from shrinknet.rankstats import _inversions, average_ranks, kendall, spearman

stats = pytest.importorskip("scipy.stats")


def _scipy(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # SciPy warns on constant input
        return float(stats.spearmanr(x, y).statistic), float(stats.kendalltau(x, y).statistic)


def _same(a, b, tol=1e-12):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_hand_worked_without_ties():
    # d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15); 5 concordant, 1 discordant of 6 pairs
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-15)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6, abs=1e-15)
    assert spearman([1, 2, 3], [30, 20, 10]) == -1.0 and kendall([1, 2, 3], [30, 20, 10]) == -1.0


def test_hand_worked_with_ties():
    x, y = [1, 2, 2, 3], [1, 3, 2, 3]
    # ranks (1, 2.5, 2.5, 4) and (1, 3.5, 2, 3.5): centred products 3.75 over sqrt(4.5 * 4.5)
    np.testing.assert_array_equal(average_ranks(x), [1, 2.5, 2.5, 4])
    assert spearman(x, y) == pytest.approx(3.75 / 4.5, abs=1e-15)
    # 4 concordant, 0 discordant, 1 pair tied in x, 1 in y: 4 / sqrt(5 * 5)
    assert kendall(x, y) == pytest.approx(0.8, abs=1e-15)
    # a pair tied in both counts in neither; here concordant - discordant = 0
    assert kendall([1, 1, 2, 2], [1, 2, 1, 2]) == 0.0
    for x, y in [([1, 2, 2, 3], [1, 3, 2, 3]), ([1, 1, 2, 2], [1, 2, 1, 2]), ([0, 0, 1, 1, 1], [5, 5, 5, 1, 2])]:
        s, k = _scipy(x, y)
        assert _same(spearman(x, y), s) and _same(kendall(x, y), k)


def test_constant_input_and_tiny_samples_are_nan():
    for x, y in [([3, 3, 3], [1, 2, 3]), ([1, 2, 3], [0, 0, 0]), ([1, 1], [1, 2]), ([1], [2]), ([], [])]:
        assert math.isnan(spearman(x, y)) and math.isnan(kendall(x, y)), (x, y)
    assert spearman([1, 2], [3, 5]) == 1.0 and kendall([1, 2], [3, 5]) == 1.0
    assert spearman([1, 2], [5, 3]) == -1.0 and kendall([1, 2], [5, 3]) == -1.0
    assert math.isnan(spearman([1, np.nan, 3], [1, 2, 3])) and math.isnan(kendall([1, 2, 3], [1, np.nan, 3]))


def test_unequal_lengths_are_refused():
    for f in (spearman, kendall):
        with pytest.raises(ShrinkNetError, match="one length"):
            f([1, 2, 3], [1, 2])
        with pytest.raises(ValueError):
            f([1, 2, 3], [1, 2])


def test_inversions_count_strictly_greater_pairs():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 3, 7, 8, 9, 33):
        v = rng.integers(0, 4, n)
        want = sum(int(v[i] > v[j]) for i in range(n) for j in range(i + 1, n))
        assert _inversions(v) == want


values = st.one_of(st.integers(-3, 3).map(float),                      # many ties
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60).flatmap(lambda n: st.tuples(st.lists(values, min_size=n, max_size=n),
                                                       st.lists(values, min_size=n, max_size=n))))
def test_matches_scipy_on_generated_samples(xy):
    x, y = xy
    s, k = _scipy(x, y) if len(x) >= 2 else (float("nan"), float("nan"))
    assert _same(spearman(x, y), s, 1e-9), (x, y)
    assert _same(kendall(x, y), k, 1e-12), (x, y)


def test_large_sample_matches_scipy():
    rng = np.random.default_rng(1)
    n = 100_000
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    y[::5] = 0.0                                       # a large tie group
    x = np.round(x, 2)                                 # and many small ones
    s, k = _scipy(x, y)
    assert spearman(x, y) == pytest.approx(s, abs=1e-12)
    assert kendall(x, y) == pytest.approx(k, abs=1e-12)
