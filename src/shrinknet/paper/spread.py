"""The spread over training seeds of an experiment's iterative curves, beside the paper's own curves.

One figure per experiment: for brute force, the 1st and the 2nd order, the median over the seeds (line)
and the lowest to highest (band) of the training error and, where there are classes, the accuracy; the
paper's digitised curve of the same criterion dashed on top (``shrinknet.paper.digitised``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import _figure, _save, label, style
from ..results import PruneResult

CRITERIA = ("brute-force", "taylor1", "taylor2")


def seed_results(out: Path, seed_runs: list[dict], crit: str, sched: str = "iterative") -> list[PruneResult]:
    """``crit``'s run with ``sched`` for every seed of the experiment whose seed-0 folder is ``out``."""
    return [PruneResult.load_json(Path(out) / s["folder"] / f"{crit}_{sched}.json") for s in seed_runs]


def _paper_curves(exp: str, crit: str):
    """The paper's (E, A) of ``crit`` for ``exp`` (A None where the paper has no accuracy figure), or None."""
    from . import digitised
    if exp not in digitised.EXPERIMENTS:
        return None
    try:
        v = digitised.PaperRuns()[exp, crit, "iterative", "train"]
    except Exception:                   # no such figure or curve: nothing to overlay
        return None
    return v.E, v.A


def plot_spread(exp: str, out: Path, seed_runs: list[dict], schedules, path, paper: str | None = None) -> Path:
    """Median and min-max band over the seeds of the iterative runs; the paper's curves dashed (``paper``)."""
    sched = "iterative" if "iterative" in schedules else schedules[0]
    runs = {c: seed_results(out, seed_runs, c, sched) for c in CRITERIA}
    has_acc = runs["brute-force"][0].accuracies is not None
    fig = _figure(figsize=(11 if has_acc else 9.5, 4.3), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    twin = None
    for c, rs in runs.items():
        colour = style(c)[0]
        x = np.r_[0, rs[0].percent_removed]
        E = np.array([[r.initial_error, *r.errors] for r in rs])
        series = [E] + ([np.array([[r.initial_accuracy, *r.accuracies] for r in rs])] if has_acc else [])
        for ax, Y in zip(axes, series):
            ax.fill_between(x, Y.min(0), Y.max(0), color=colour, alpha=0.2, linewidth=0)
            ax.plot(x, np.median(Y, 0), color=colour, label=f"{label(c)}: median of {len(rs)} seeds, band min-max")
        theirs = _paper_curves(paper, c) if paper else None
        if theirs is not None:
            pe, pa = theirs
            px = np.linspace(0, 100, len(pe))
            if twin is None:                       # the paper's errors are on its own data: its own scale
                twin = axes[0].twinx()
                twin.set_ylabel("the paper's sum of squared errors (dashed)", fontsize=8)
            twin.plot(px, pe, color=colour, linestyle="--", linewidth=1)
            if has_acc and pa is not None:
                axes[1].plot(px, pa, color=colour, linestyle="--", linewidth=1, label=f"{label(c)}: the paper")
    axes[0].set(xlabel="Percentage of neurons removed", ylabel="Sum of squared errors (training set)")
    if has_acc:
        axes[1].set(xlabel="Percentage of neurons removed", ylabel="Classification accuracy (training set)",
                    ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    if has_acc and paper:
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{exp}: {sched}, spread over {len(seed_runs)} training seed(s)"
                 + ("; dashed: the paper's digitised curves" if paper else ""))
    return _save(fig, path)
