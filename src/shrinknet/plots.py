"""Figures: error / accuracy against neurons removed, criteria against the oracle, and gain error
surfaces (PNG or any format matplotlib writes).

Every figure of the package is drawn here, for the library (:meth:`shrinknet.CompareResult.save`)
and the paper's application alike (``shrinknet.paper.plots`` is this module under its older name).
Figures are built as :class:`matplotlib.figure.Figure` objects and saved through their own Agg
canvas: no pyplot, no global figure list, and the user's matplotlib backend is left as it was.
matplotlib is optional and imported on first use (``pip install 'shrinknet[paper]'``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io import atomic_target
from ._validation import require
from .results import PruneResult, layer_counts

#: one colour, marker and name per criterion, the same in every figure. The paper's three keep its
#: colours (brute force blue, 1st order green, 2nd order red); the rest are spread so that no two
#: criteria a figure is likely to hold side by side look alike. The schedule is the line style.
CRITERIA = {
    "brute-force": ("#1f77b4", "o", "Brute force (exact)"),
    "brute-force-literal": ("#17becf", "o", "Brute force (literal definition)"),
    "brute-force-subset": ("#6baed6", "h", "Brute force on 10 % of samples"),
    "brute-force-topk": ("#08306b", "H", "Brute force, top 10 of last step"),
    "taylor1": ("#2ca02c", "s", "1st order Taylor (Skeletonization)"),
    "taylor1-abs": ("#98df8a", "D", "|1st order Taylor|"),
    "taylor2": ("#d62728", "^", "2nd order Taylor (paper's OBD diagonal)"),
    "taylor2-exact": ("#ff7f0e", "v", "2nd order Taylor (exact 2nd derivative)"),
    "taylor2-mean": ("#e377c2", "<", "2nd order, outliers set to the mean"),
    "taylor2-median": ("#8c564b", ">", "2nd order, outliers set to the median"),
    "fisher": ("#9467bd", "P", "Fisher (empirical, in the gate)"),
    "random": ("#7f7f7f", "x", "Random"),
    "l1-in": ("#bcbd22", "1", "L1 of incoming weights"),
    "l2-in": ("#8c8c00", "2", "L2 of incoming weights"),
    "l1-out": ("#000000", "3", "L1 of outgoing weights"),
    "l2-out": ("#525252", "4", "L2 of outgoing weights"),
    "mean-activation": ("#c49c94", "*", "Mean activation"),
    "activation-variance": ("#f7b6d2", "d", "Activation variance"),
    "apoz": ("#843c39", "p", "APoZ (share of zero outputs)"),
}
#: the schedule's line style: solid = iterative re-ranking, dashed = one overall ranking
STYLES = {"iterative": "-", "single": "--"}
SCHEDULE_NOTE = "solid: iterative re-ranking, dashed: single overall ranking"
_SPARE = ["#393b79", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1"]
_MARKERS = "ovs^<>DPX*"
#: figure resolution: every figure is at least 9.5 inches wide, so at least 1,045 pixels, with text of
#: about 15 pixels (10 points)
DPI = 110
MIN_WIDTH_IN = 9.5


def style(name: str) -> tuple[str, str, str]:
    """(colour, marker, label) of a criterion; a name the table does not know (a user's criterion)
    always gets the same spare colour and marker, from a hash of the name that does not change
    between runs (not Python's salted ``hash``)."""
    if name in CRITERIA:
        return CRITERIA[name]
    h = sum((i + 1) * ord(ch) for i, ch in enumerate(name))
    return _SPARE[h % len(_SPARE)], _MARKERS[h % len(_MARKERS)], name


def label(name: str) -> str:
    """The criterion's name in figures' legends."""
    return style(name)[2]


# the names earlier versions had, for code that read them
COLORS = {k: v[0] for k, v in CRITERIA.items()}
LABELS = {k: v[2] for k, v in CRITERIA.items()}


def colors_for(names) -> dict:
    """Each name's colour (as :func:`style` gives it)."""
    return {n: style(n)[0] for n in dict.fromkeys(names)}


def _line(name: str, schedule: str = "iterative", n_points: int = 1) -> dict:
    """Keyword arguments for Axes.plot: the criterion's colour and marker (about 12 marks per line,
    staggered between criteria), the schedule's line style."""
    color, marker, _ = style(name)
    every = max(1, n_points // 12)
    k = list(CRITERIA).index(name) if name in CRITERIA else len(name)
    start = (3 * k + (0 if schedule == "iterative" else 1)) % every    # staggered: marks of lines on top of
    return dict(color=color, marker=marker, markevery=(start, every), markersize=5,   # each other stay apart
                ls=STYLES.get(schedule, "-"), lw=1.6)


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
    """True colour (RGB, no palette: a palette merges nearby line colours), at DPI, no wider than the
    figure (no tight bounding box, which would crop it below MIN_WIDTH_IN)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    w, h = fig.get_size_inches()
    if w < MIN_WIDTH_IN:
        fig.set_size_inches(MIN_WIDTH_IN, h * MIN_WIDTH_IN / w)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=fmt, facecolor="white",
                    **({"pil_kwargs": {"optimize": True}} if fmt == "png" else {}))
        if fmt == "png":
            _rgb(tmp)
    return path


def _rgb(png: str) -> None:
    """Drop the alpha channel matplotlib writes (the background is opaque white): a smaller file."""
    try:
        from PIL import Image
    except ImportError:  # pillow comes with matplotlib; without it keep the RGBA file
        return
    with Image.open(png) as im:
        rgb = im.convert("RGB")
    rgb.save(png, format="PNG", optimize=True)


def _xs(r: PruneResult, percent: bool):
    return np.r_[0, r.percent_removed] if percent else np.arange(r.n_removed + 1)


def plot_curves(results: list[PruneResult], path, title: str = "", percent: bool = True,
                test: bool = False) -> Path:
    """Error (left) and, where there are classes, accuracy (right) against neurons removed; one curve
    per (criterion, schedule): the criterion's colour and marker, solid = iterative re-ranking,
    dashed = single ranking."""
    has_acc = any(r.accuracies is not None for r in results)
    fig = _figure(figsize=(11 if has_acc else 9.5, 4.3), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    schedules = {r.schedule for r in results}
    for r in results:
        errs = r.test_errors if test else r.errors
        e0 = r.initial_test_error if test else r.initial_error
        name = label(r.criterion) + (f" ({r.schedule})" if len(schedules) > 1 else "")
        kw = dict(_line(r.criterion, r.schedule, r.n_removed + 1), label=name)
        axes[0, 0].plot(_xs(r, percent), [e0] + list(errs), **kw)
        accs = r.test_accuracies if test else r.accuracies
        if has_acc and accs is not None:
            a0 = r.initial_test_accuracy if test else r.initial_accuracy
            axes[0, 1].plot(_xs(r, percent), [a0] + list(accs), **kw)
    xl = "Percentage of neurons removed" if percent else "Number of neurons removed"
    which = "test set" if test else "evaluation set"
    axes[0, 0].set(xlabel=xl, ylabel=f"Sum of squared errors ({which})" if results and results[0].loss == "sse"
                   else f"Cross-entropy ({which})")
    if has_acc:
        axes[0, 1].set(xlabel=xl, ylabel=f"Classification accuracy ({which})", ylim=(0, 1.05))
    axes[0, 0].legend(fontsize=8, title=SCHEDULE_NOTE if len(schedules) > 1 else None, title_fontsize=8)
    counts = {r.initially_active for r in results}
    n = counts.pop() if len(counts) == 1 else 0
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        if percent and n:                              # the paper's other axis, the count, on top
            top = ax.secondary_xaxis("top", functions=(lambda p: p * n / 100, lambda c: c * 100 / n))
            top.set_xlabel("Number of neurons removed", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gain_surfaces(surfaces: dict, path, title: str = "") -> Path:
    """surfaces: criterion -> list of (step, layer, unit, gains, errors) from analysis.gain_surfaces.
    One row per criterion, log scale (left) and linear (right). Each line is the error as one neuron's
    gain goes from 0 (off) through 1 (as trained, the red line) and beyond, the other neurons as they
    were at that step; the neuron is the one the criterion removed at that step."""
    rows = max(1, len(surfaces))
    fig = _figure(figsize=(12, 2.7 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for i, (crit, curves) in enumerate(surfaces.items()):
        cmap = _colormap("viridis", max(2, len(curves)))
        for j, (step, layer, unit, gains, errs) in enumerate(curves):
            for k, ax in enumerate(axes[i]):
                ax.plot(gains, np.maximum(errs, 1e-12) if k == 0 else errs, color=cmap(j), lw=1.2,
                        label=f"step {step}: layer {layer}, neuron {unit}")
        for k, ax in enumerate(axes[i]):
            ax.axvline(1.0, color="red", lw=0.8)
            ax.set(xlabel="Gain of the neuron removed at that step (1 = as trained, 0 = off)",
                   ylabel="Error" + (" (log scale)" if k == 0 else ""),
                   title=f"{label(crit)}, {'log' if k == 0 else 'linear'} scale")
            if k == 0:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        # one legend per row, right of both panels (they share the lines)
        axes[i, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                          title="step: the neuron\nremoved then", title_fontsize=7)
    fig.suptitle((title + "\n" if title else "") + "Error against one neuron's gain, the rest of the net as at "
                 "that step; red line: gain 1", fontsize=10)
    return _save(fig, path)


def plot_layers(result: PruneResult, path, title: str = "") -> Path:
    """Which hidden layer each removal came from (cumulative count per layer)."""
    c = np.array(layer_counts(result)) if result.n_removed else np.zeros((0, len(result.hidden_sizes)))
    fig = _figure(figsize=(9.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for l in range(c.shape[1]):
        ax.plot(np.arange(1, len(c) + 1), c[:, l], lw=1.6, ls=["-", "--", ":", "-."][l % 4],
                label=f"hidden layer {l} ({result.hidden_sizes[l]} neurons)")
    ax.set(xlabel="Number of neurons removed", ylabel="Neurons removed from the layer so far",
           title=title or label(result.criterion))
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_comparison(rows, path, title: str = "Criteria against the exact oracle, along its removal path") -> Path:
    """Spearman correlation with the exact change in error, and regret, per step and criterion;
    and the share of steps where each criterion's top choice was the oracle's.

    ``rows``: :attr:`shrinknet.CompareResult.rows` (dicts with criterion, step, spearman, regret,
    agrees), or a pandas DataFrame with those columns."""
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    fig = _figure(figsize=(14, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    names = list(dict.fromkeys(r["criterion"] for r in rows))
    for i, name in enumerate(names):
        mine = [r for r in rows if r["criterion"] == name]
        col = lambda k: np.array([float(r[k]) for r in mine])  # noqa: E731
        step, regret = col("step"), col("regret")
        kw = dict(_line(name, "iterative", len(step)), label=label(name))
        axes[0].plot(step, col("spearman"), **kw)
        axes[1].plot(step, np.where(np.isnan(regret), np.nan, np.nancumsum(regret)), **kw)
        axes[2].bar(i, np.nanmean(col("agrees")), color=style(name)[0])
    ticker = require("matplotlib.ticker", "paper", "plotting")
    for ax in axes[:2]:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))      # steps are whole numbers
    axes[0].set(xlabel="Oracle step (neurons removed)", ylabel="Spearman with the exact change in error",
                ylim=(-1.05, 1.05))
    axes[1].set(xlabel="Oracle step (neurons removed)",
                ylabel="Cumulative regret: error of its choice − the oracle's")
    axes[1].set_yscale("symlog")
    axes[2].set(xticks=range(len(names)), ylabel="Share of steps choosing the oracle's neuron", ylim=(0, 1))
    axes[2].set_xticklabels(names, rotation=45, ha="right", fontsize=9)
    axes[0].legend(fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)
