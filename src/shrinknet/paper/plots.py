"""Figures: error / accuracy against neurons removed, and gain error surfaces (PNG).

Figures are built as :class:`matplotlib.figure.Figure` objects and saved through their own Agg
canvas: no pyplot, no global figure list, and the user's matplotlib backend is left as it was.
matplotlib is imported on first use (``pip install 'shrinknet[paper]'``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_target
from .._validation import require
from ..results import PruneResult

# the paper's colours: brute force blue, first order green, second order red
COLORS = {"brute-force": "tab:blue", "brute-force-literal": "tab:blue", "taylor1": "tab:green",
          "taylor2": "tab:red", "taylor2-exact": "tab:purple", "taylor2-mean": "tab:orange",
          "taylor2-median": "tab:brown"}
LABELS = {"brute-force": "Brute force", "taylor1": "1st order / Skeletonization",
          "taylor2": "2nd order Taylor (OBD, paper)", "taylor2-exact": "2nd order Taylor (exact)"}
STYLES = {"iterative": "-", "single": "--"}
_SPARE = ["tab:cyan", "tab:olive", "tab:pink", "tab:gray", "black", "gold", "navy", "lime", "teal", "salmon"]


def colors_for(names) -> dict:
    """The paper's colours for its criteria, distinct spare colours for every other name."""
    out, spare = {}, iter(_SPARE * 3)
    for n in dict.fromkeys(names):
        out[n] = COLORS.get(n) or next(spare)
    return out


def check_available() -> None:
    """Raise :class:`~shrinknet._validation.MissingDependencyError` now, before any work, unless
    matplotlib is installed."""
    require("matplotlib.figure", "paper", "plotting")


def _figure(**kwargs):
    """A new Figure on its own Agg canvas (figsize=, layout=, ... as for Figure)."""
    figure = require("matplotlib.figure", "paper", "plotting")
    backend_agg = require("matplotlib.backends.backend_agg", "paper", "plotting")
    fig = figure.Figure(**kwargs)
    backend_agg.FigureCanvasAgg(fig)
    return fig


def _colormap(name: str, n: int):
    """Colormap `name` resampled to n colours (what pyplot.get_cmap(name, n) gives)."""
    return require("matplotlib", "paper", "plotting").colormaps[name].resampled(n)


def _save(fig, path) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight", format=fmt)
        if fmt == "png":
            _palette(tmp)
    return path


def _palette(png: str, colors: int = 64) -> None:
    """Line plots use few colours: a 64-colour palette PNG is a third of the size, same look."""
    try:
        from PIL import Image
    except ImportError:  # pillow comes with matplotlib; without it keep the RGBA file
        return
    with Image.open(png) as im:
        q = im.convert("RGB").quantize(colors=colors)
    q.save(png, format="PNG", optimize=True)


def _xs(r: PruneResult, percent: bool):
    return np.r_[0, r.percent_removed] if percent else np.arange(r.n_removed + 1)


def plot_curves(results: list[PruneResult], path, title: str = "", percent: bool = True,
                test: bool = False) -> Path:
    """Error (left) and, where there are classes, accuracy (right) against neurons removed;
    one curve per (criterion, schedule): solid = iterative re-ranking, dashed = single ranking."""
    has_acc = any(r.accuracies is not None for r in results)
    colors = colors_for(r.criterion for r in results)
    fig = _figure(figsize=(11 if has_acc else 6, 4))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    for r in results:
        errs = r.test_errors if test else r.errors
        e0 = r.initial_test_error if test else r.initial_error
        kw = dict(color=colors[r.criterion], ls=STYLES.get(r.schedule, "-"), lw=1.4,
                  label=f"{LABELS.get(r.criterion, r.criterion)} ({r.schedule})")
        axes[0, 0].plot(_xs(r, percent), [e0] + list(errs), **kw)
        accs = r.test_accuracies if test else r.accuracies
        if has_acc and accs is not None:
            a0 = r.initial_test_accuracy if test else r.initial_accuracy
            axes[0, 1].plot(_xs(r, percent), [a0] + list(accs), **kw)
    xl = "Percentage of neurons removed" if percent else "Number of neurons removed"
    which = "test" if test else "evaluation"
    axes[0, 0].set(xlabel=xl, ylabel=f"Sum of squared errors ({which})" if results and results[0].loss == "sse"
                   else f"Cross-entropy ({which})")
    if has_acc:
        axes[0, 1].set(xlabel=xl, ylabel=f"Classification accuracy ({which})", ylim=(0, 1.05))
    axes[0, 0].legend(fontsize=7)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gain_surfaces(surfaces: dict, path, title: str = "") -> Path:
    """surfaces: criterion -> list of (step, layer, unit, gains, errors) from analysis.gain_surfaces.
    One row per criterion, log scale (left) and linear (right); red line at gain 1."""
    rows = max(1, len(surfaces))
    fig = _figure(figsize=(11, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for i, (crit, curves) in enumerate(surfaces.items()):
        cmap = _colormap("viridis", max(2, len(curves)))
        for j, (step, layer, unit, gains, errs) in enumerate(curves):
            for k, ax in enumerate(axes[i]):
                ax.plot(gains, np.maximum(errs, 1e-12) if k == 0 else errs, color=cmap(j), lw=1,
                        label=f"removal {step} (L{layer} u{unit})")
        for k, ax in enumerate(axes[i]):
            ax.axvline(1.0, color="red", lw=0.8)
            ax.set(xlabel="Gain (1 = normal output, 0 = off)", ylabel="Error",
                   title=f"{LABELS.get(crit, crit)} - {'log' if k == 0 else 'linear'}")
            if k == 0:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[i, 1].legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_layers(result: PruneResult, path, title: str = "") -> Path:
    """Which hidden layer each removal came from (cumulative count per layer)."""
    from .analysis import layer_counts

    c = np.array(layer_counts(result)) if result.n_removed else np.zeros((0, len(result.hidden_sizes)))
    fig = _figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for l in range(c.shape[1]):
        ax.plot(np.arange(1, len(c) + 1), c[:, l], label=f"hidden layer {l} ({result.hidden_sizes[l]} units)")
    ax.set(xlabel="Number of neurons removed", ylabel="Removed from layer", title=title or result.criterion)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_comparison(rows, path, title: str = "Criteria against the exact oracle, along its removal path") -> Path:
    """Spearman correlation with the exact change in error, and regret, per step and criterion;
    and the share of steps where each criterion's top choice was the oracle's.

    ``rows``: :attr:`shrinknet.CompareResult.rows` (dicts with criterion, step, spearman, regret,
    agrees), or a pandas DataFrame with those columns."""
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    fig = _figure(figsize=(15, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    names = list(dict.fromkeys(r["criterion"] for r in rows))
    colors = colors_for(names)
    for i, name in enumerate(names):
        mine = [r for r in rows if r["criterion"] == name]
        col = lambda k: np.array([float(r[k]) for r in mine])  # noqa: E731
        step, regret = col("step"), col("regret")
        c = colors[name]
        axes[0].plot(step, col("spearman"), color=c, lw=1.2, label=LABELS.get(name, name))
        axes[1].plot(step, np.where(np.isnan(regret), np.nan, np.nancumsum(regret)), color=c, lw=1.2,
                     label=LABELS.get(name, name))
        axes[2].bar(i, np.nanmean(col("agrees")), color=c)
    axes[0].set(xlabel="Oracle step (neurons removed)", ylabel="Spearman with exact change", ylim=(-1.05, 1.05))
    axes[1].set(xlabel="Oracle step (neurons removed)", ylabel="Cumulative regret (error units)")
    axes[1].set_yscale("symlog")
    axes[2].set(xticks=range(len(names)), ylabel="Share of steps choosing the oracle's neuron", ylim=(0, 1))
    axes[2].set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)
