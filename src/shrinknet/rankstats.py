"""Rank correlations in NumPy alone: Spearman's rho and Kendall's tau-b.

They give what ``scipy.stats.spearmanr`` and ``scipy.stats.kendalltau`` (its default, tau-b) give,
ties included, without importing SciPy, so :func:`shrinknet.compare` needs only the core packages.

    >>> from shrinknet.rankstats import kendall, spearman
    >>> spearman([1, 2, 3, 4], [1, 3, 2, 4])
    0.8
    >>> round(kendall([1, 2, 3, 4], [1, 3, 2, 4]), 6)
    0.666667
"""
from __future__ import annotations

import numpy as np

from ._validation import ShrinkNetError

__all__ = ["average_ranks", "kendall", "spearman"]


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    """x and y flattened to float64 arrays of one length (as SciPy flattens them)."""
    try:
        a = np.asarray(x, dtype=np.float64).ravel()
        b = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError) as e:
        raise ShrinkNetError(f"x, y: expected numeric arrays, got {type(x).__name__} and {type(y).__name__} "
                             f"({e})") from None
    if a.size != b.size:
        raise ShrinkNetError(f"x, y: expected arrays of one length, got {a.size} and {b.size}")
    return a, b


def average_ranks(a) -> np.ndarray:
    """Ranks 1..n of the entries of ``a``, tied entries sharing the mean of their ranks.

    Parameters
    ----------
    a : array_like
        Values to rank, flattened; NaN is not allowed (the callers check).

    Returns
    -------
    numpy.ndarray
        float64 ranks, the same as ``scipy.stats.rankdata(a, method="average")``.
    """
    a = np.asarray(a).ravel()
    n = a.size
    order = np.argsort(a, kind="stable")
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.arange(n)
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]
    dense = np.cumsum(new)[inverse]                     # 1-based index of each entry's tie group
    bounds = np.r_[np.flatnonzero(new), n]              # where each tie group starts, and the end
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks.

    Parameters
    ----------
    x, y : array_like
        Two samples of one length (flattened).

    Returns
    -------
    float
        rho in [-1, 1]; NaN where either sample is constant, has fewer than two entries or
        holds a NaN (like ``scipy.stats.spearmanr(x, y).statistic``).

    Raises
    ------
    ShrinkNetError
        If x and y differ in length or are not numeric.
    """
    a, b = _pair(x, y)
    if a.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    saa, sbb = float(ra @ ra), float(rb @ rb)
    if saa == 0.0 or sbb == 0.0:                        # a constant sample has no ranking
        return float("nan")
    return float(min(1.0, max(-1.0, float(ra @ rb) / np.sqrt(saa * sbb))))


def _dense(sorted_values: np.ndarray) -> np.ndarray:
    """Dense ranks 1, 2, ... of an already sorted array."""
    return np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]], dtype=np.int64)


def _tied_pairs(sorted_values: np.ndarray) -> int:
    """Pairs of equal entries in a sorted array: sum of c (c - 1) / 2 over its tie groups."""
    n = sorted_values.size
    c = np.diff(np.r_[np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]]), n]).astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def _inversions(v: np.ndarray) -> int:
    """Pairs i < j with v[i] > v[j] (strictly), by a bottom-up merge sort: O(n log n) time, O(n) memory.

    At each level, sorted blocks of width w are merged in pairs by one stable argsort of
    (pair, value); a right-block entry's merged position tells how many left-block entries precede
    it, so the rest of the left block (all greater) are its inversions."""
    n = v.size
    if n < 2:
        return 0
    v = v.astype(np.int64) - int(v.min())
    span = int(v.max()) + 1
    idx = np.arange(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    total = 0
    w = 1
    while w < n:
        pair = idx // (2 * w)
        order = np.argsort(pair * span + v, kind="stable")     # two sorted runs per pair: linear
        pos[order] = idx
        right = (idx // w) % 2 == 1                             # a right block is only there after a full left one
        left_before = pos[right] - idx[right] + w              # merged offset minus offset among the right block
        total += int((w - left_before).sum())
        v = v[order]
        w *= 2
    return total


def kendall(x, y) -> float:
    """Kendall's tau-b rank correlation, ties in either sample accounted for.

    Parameters
    ----------
    x, y : array_like
        Two samples of one length (flattened).

    Returns
    -------
    float
        tau-b = (concordant - discordant) / sqrt((n0 - n1) (n0 - n2)) with n0 = n (n - 1) / 2 and
        n1, n2 the pairs tied in x, in y; NaN where either sample is constant, has fewer than two
        entries or holds a NaN. The same as ``scipy.stats.kendalltau(x, y).statistic`` (its default,
        ``variant="b"``).

    Raises
    ------
    ShrinkNetError
        If x and y differ in length or are not numeric.

    Notes
    -----
    Knight's O(n log n) method, as SciPy's: sort by y then (stably) by x, so that the discordant
    pairs are the strict inversions of the y ranks; memory stays O(n).
    """
    a, b = _pair(x, y)
    n = a.size
    if n < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    order = np.argsort(b, kind="stable")
    a, b = a[order], b[order]
    b = _dense(b)
    order = np.argsort(a, kind="stable")                        # within ties of x, y stays sorted
    a, b = a[order], b[order]
    a = _dense(a)
    discordant = _inversions(b)
    joint = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1]), True]
    c = np.diff(np.flatnonzero(joint)).astype(np.int64)
    both_tied = int((c * (c - 1) // 2).sum())
    x_tied, y_tied = _tied_pairs(a), _tied_pairs(np.sort(b))
    total = n * (n - 1) // 2
    if x_tied == total or y_tied == total:                      # a constant sample has no ranking
        return float("nan")
    con_minus_dis = total - x_tied - y_tied + both_tied - 2 * discordant
    tau = con_minus_dis / np.sqrt(float(total - x_tied)) / np.sqrt(float(total - y_tied))
    return float(min(1.0, max(-1.0, tau)))
