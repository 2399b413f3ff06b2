"""The paper's own curves, read out of its vector figures, as runs the claims' rules can grade.

``paper_curves.json`` holds every curve of figs. 2-25 in data coordinates; it is written by
``scripts/digitise_paper_figures.py`` from the figure PDFs of the paper's LaTeX source, which states
the reading error (0.25 pt of the figure, per axis in data units: ``x_error`` / ``y_error``).

What the figures give and what they do not, as a :class:`~shrinknet.paper.claims.Runs` reads it:

* each error / accuracy curve has one point per removal, the first after the *first* removal (the three
  criteria differ there) and the last with every neuron removed; the start is not plotted. The start
  error E[0] is read from the brute-force gain figure (the first neuron swept, at gain 1: the net before
  any removal) where there is one, otherwise (cosine and shape nets) it is the lowest error after one
  removal over the three criteria; the start accuracy A[0] is the caption's / text's;
* the figures do not show which layer each removal came from, nor the criteria's predictions: the rules
  that read those are "not testable" on the paper's data;
* there is one set per figure; the same curves stand for the training and the test set.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..claims import Untestable, View

PATH = Path(__file__).with_name("paper_curves.json")
_NAMES = {"Brute Force": "brute-force", "1st Order / Skeletonization": "taylor1", "2nd Order Taylor Approx": "taylor2"}
#: experiment -> (n_layers, {(schedule, "E" | "A"): figure file}, gain figure prefix or None, start accuracy)
EXPERIMENTS = {
    "cos-2x10": (2, {("iterative", "E"): "cos-small"}, None, None),
    "cos-2x50": (2, {("iterative", "E"): "cos-big"}, None, None),
    "mnist-1x100": (1, {("single", "E"): "mnist-acc99-single-pass-method",
                        ("single", "A"): "mnist-acc99-single-pass-accuracy",
                        ("iterative", "E"): "mnist-acc99-iterative-rerank-method",
                        ("iterative", "A"): "mnist-acc99-iterative-rerank-accuracy"}, "mnist-acc99", 0.998),
    "mnist-2x50": (2, {("single", "E"): "mnist-deep-single-pass-method",
                       ("single", "A"): "mnist-deep-single-pass-accuracy",
                       ("iterative", "E"): "mnist-deep-iterative-rerank-method",
                       ("iterative", "A"): "mnist-deep-iterative-rerank-accuracy"}, "mnist-deep", 1.0),
    **{f"digit-{d}": (1, {("iterative", "E"): f"mnist-test-single-digit-{d}"}, f"mnist-test-single-digit-{d}", a)
       for d, a in ((0, 0.9757), (1, 0.9881), (2, 0.9513))},
    "diamond": (2, {("iterative", "E"): "diamond-iterative-rerank-method",
                    ("iterative", "A"): "diamond-iterative-rerank-accuracy"}, None, 0.992),
    "random-shape": (2, {("iterative", "E"): "rshape-iterative-rerank-method",
                         ("iterative", "A"): "rshape-iterative-rerank-accuracy"}, None, 0.986),
}
_GAIN_SUFFIX = {"brute-force": "gt", "taylor1": "g1", "taylor2": "g2"}


@functools.lru_cache(maxsize=1)
def figures() -> dict:
    """The digitised figures: {file: {"figure", "x", "K", "axes": [{"curves": {name: [[x, y], ...]}, ...}]}}."""
    return json.loads(PATH.read_text())["figures"]


def curve(fig: str, crit: str) -> np.ndarray:
    """The y values of ``crit``'s curve in figure file ``fig`` (one per removal, the first after one removal)."""
    ax = figures()[fig]["axes"][-1]
    for name, pts in ax["curves"].items():
        if _NAMES.get(name) == crit:
            return np.array([y for _, y in pts], dtype=float)
    raise Untestable(f"the paper's figure has no {crit} curve")


def reading_error(fig: str) -> float:
    """The reading error of figure file ``fig``'s y axis, in data units."""
    return float(figures()[fig]["axes"][-1]["y_error"])


def gain_curves(prefix: str, crit: str) -> dict:
    """{step: [(gain, E), ...]} of the gain figure of ``crit`` (the neurons swept: every 10th removal)."""
    name = f"{prefix}-{_GAIN_SUFFIX[crit]}"
    fig = figures().get(f"{name}-gain") or figures()[name]
    return {int(name.split(":")[1]): pts for name, pts in fig["axes"][-1]["curves"].items()}


def _at(pts, g: float) -> float:
    xs, ys = zip(*pts)
    return float(np.interp(g, xs, ys))


class PaperRuns:
    """The paper's digitised curves behind the interface of :class:`~shrinknet.paper.claims.Runs`.

    ``shift`` moves every curve by that many reading errors (+1 up, -1 down): a rule that passes at
    shift 0, +1 or -1 passes within the reading error."""

    variant = False

    def __init__(self, shift: float = 0.0):
        self.shift = shift
        self.summaries = {e: {"id": e, "train_accuracy": a, "test_accuracy": a} for e, (_, _, _, a) in EXPERIMENTS.items()}

    def has(self, *exps) -> bool:
        return all(e in self.summaries for e in exps)

    def start_error(self, exp: str) -> float:
        _, figs, gains, _ = EXPERIMENTS[exp]
        if gains:
            return _at(gain_curves(gains, "brute-force")[0], 1.0)
        return float(min(curve(figs["iterative", "E"], c)[0] for c in ("brute-force", "taylor1", "taylor2")))

    def __getitem__(self, key) -> View:
        exp, crit, sched, _ = key
        n_layers, figs, _, a0 = EXPERIMENTS[exp]
        if (sched, "E") not in figs:
            raise Untestable(f"the paper has no {sched} figure of {exp}")
        fe = figs[sched, "E"]
        E = np.concatenate([[self.start_error(exp)], curve(fe, crit) + self.shift * reading_error(fe)])
        A = None
        if (sched, "A") in figs:
            fa = figs[sched, "A"]
            A = np.concatenate([[a0], curve(fa, crit) + self.shift * reading_error(fa)])
        return View(E, A, None, len(E) - 1, n_layers)

    def start_accuracy(self, exp: str, which: str) -> float:
        a = self.summaries[exp]["train_accuracy"]
        if a is None:
            raise Untestable("the net's targets are not classes: no accuracy")
        return a

    def predicted(self, exp: str, crit: str) -> np.ndarray:
        raise Untestable("the paper's figures do not show the criteria's predictions")

    def estimate_correlation(self, exp: str) -> dict:
        raise Untestable("the paper's figures do not show the criteria's estimates")

    def gains(self, exp: str, crit: str) -> list:
        prefix = EXPERIMENTS[exp][2]
        if prefix is None or crit not in _GAIN_SUFFIX:
            return []
        full = self[exp, crit, "iterative", "train"].E[-1]
        return [[step, _at(pts, 0.0), _at(pts, 1.0), _at(pts, 2.0), float(full)]
                for step, pts in sorted(gain_curves(prefix, crit).items())]
