"""Judge pruning criteria against the exact oracle.

Along the oracle's own removal path (exact serial brute force), at every step each criterion scores
the remaining units in that very state; we record its Spearman and Kendall rank correlation with
the exact change in error of every remaining unit, whether its top choice is the oracle's, and its
regret (the exact change its choice would cause minus the oracle's). Each criterion's own whole
pruning path is recorded too.

    >>> res = shrinknet.compare_criteria(model, X, T, criteria=["taylor1", "taylor2", "l1-out"])
    >>> res.summary()                    # means per criterion (res.rows: every (step, criterion))
"""
from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import _progress, plots
from ._io import write_text
from ._validation import MissingDependencyError, ShrinkNetError, check_path, require
from .checkpoint import Checkpoint, data_digest, digest
from .context import PruningContext
from .criteria import check_scores, get_criterion, ranked
from .pruning import prune
from .rankstats import kendall, spearman
from .results import PruneResult

#: the per-criterion means of :meth:`CompareResult.summary`
MEASURES = ("spearman", "kendall", "agrees", "regret")


@dataclass
class CompareResult:
    """``rows``: one dict per (step, criterion) along the oracle's path (step, criterion, spearman,
    kendall, agrees, regret, chosen_layer, chosen_unit, n_candidates); ``paths``: each criterion's own
    pruning run (and the oracle's, under "brute-force"). ``table``, ``path_table`` and ``summary()``
    give them as pandas DataFrames (pandas is in ``shrinknet[paper]``)."""
    rows: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    oracle: PruneResult | None = None
    seconds: float = 0.0

    def path_rows(self) -> list[dict]:
        keys = ("step", "percent_removed", "error", "accuracy", "test_error", "test_accuracy")
        return [{"criterion": name, **{k: row[k] for k in keys}} for name, r in self.paths.items() for row in r.rows()]

    def summary_rows(self) -> list[dict]:
        """Mean over the oracle's path, per criterion (NaN correlations left out of the means)."""
        out = []
        for name in dict.fromkeys(r["criterion"] for r in self.rows):
            mine = [r for r in self.rows if r["criterion"] == name]
            out.append({"criterion": name, **{k: float(np.nanmean([float(r[k]) for r in mine]))
                                              if any(not np.isnan(float(r[k])) for r in mine) else float("nan")
                                              for k in MEASURES}})
        return out

    @property
    def table(self):
        return require("pandas", "paper").DataFrame(self.rows)

    @property
    def path_table(self):
        return require("pandas", "paper").DataFrame(self.path_rows())

    def summary(self):
        """:meth:`summary_rows` as a pandas DataFrame."""
        return require("pandas", "paper").DataFrame(self.summary_rows())

    def save(self, out) -> list[Path]:
        """compare.csv, paths.csv, summary.csv and, where matplotlib is installed, compare.png and paths.png."""
        out = check_path(out, "out")
        files = [_write_csv(out / "compare.csv", self.rows), _write_csv(out / "paths.csv", self.path_rows()),
                 _write_csv(out / "summary.csv", self.summary_rows())]
        try:
            plots.check_available()
        except MissingDependencyError:                  # no matplotlib: the CSV files only
            return files
        files.append(plots.plot_comparison(self.rows, out / "compare.png"))
        files.append(plots.plot_curves(list(self.paths.values()), out / "paths.png",
                                       title="Each criterion's own pruning path (iterative)"))
        return files


def _write_csv(path: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return write_text(path, buf.getvalue())


def compare_criteria(model, X, T, criteria=("taylor1", "taylor2", "taylor2-exact"), loss: str | None = None, *,
                     steps: int | None = None, test=None, own_paths: bool = True, compensation: str = "none",
                     units=None, output_activation=None, dtype=None, device=None,
                     progress: bool | None = None, checkpoint=None) -> CompareResult:
    """Compare `criteria` with the exact oracle along its removal path (also named ``compare``).

    Parameters
    ----------
    criteria : names or callables (see :func:`shrinknet.available_criteria`)
    loss : {"sse", "cross-entropy"}, optional; default cross-entropy for integer labels, else SSE
    steps : compare at the first `steps` oracle steps only (default: every step)
    test : (X_test, T_test), tracked on every criterion's own path
    own_paths : also run every criterion's own iterative pruning path
    compensation : {"none", "mean", "lstsq"}, scoring and removing with that compensation on
    units, output_activation : for models other than the MLP class, as in :func:`shrinknet.prune`
    progress : bool or None
        Progress bars of the oracle's path and of each criterion's own path: None (default) shows
        them once a part has run 2 s, True from the start, False never.
    checkpoint : str or Path, optional
        A folder where every oracle step and every own path's removals are written as they end;
        called again with the same folder, model, data and options it resumes (see
        :func:`shrinknet.prune`).

    Returns
    -------
    CompareResult
    """
    progress = _progress.check(progress)
    if not criteria:
        raise ShrinkNetError("criteria: expected at least one criterion, got none")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 0):
        raise ShrinkNetError(f"steps: expected a non-negative integer (or None for every step), got {steps!r}")
    ctx = PruningContext.start(model, X, T, loss, units=units, output_activation=output_activation, dtype=dtype,
                               device=device, compensation=compensation)
    crits = [get_criterion(c) for c in criteria]
    exact = get_criterion("brute-force")
    work = ctx.model
    n = work.n_active() if steps is None else min(int(steps), work.n_active())
    rows = []
    t0 = time.perf_counter()
    ckpt, done = None, 0
    if checkpoint is not None:
        # (the outer Checkpoint only checks the argument)
        ckpt = Checkpoint(Checkpoint(checkpoint).folder / "oracle-path", required=("oracle", "rows"))
        records = ckpt.open({"dtype": str(work.gates[0].dtype), "device": work.gates[0].device.type,
                             "model": digest(work.state_tensors()), "data": data_digest(ctx.X, ctx.T),
                             "criteria": [c.name for c in crits], "loss": ctx.loss, "compensation": ctx.compensation,
                             "units": list(work.unit_names), "initial_error": ctx.measure()[0]})
        for rec in records[:n]:                 # replay the oracle's recorded removals and their rows
            rows += rec["rows"]
            ctx.remove(*rec["oracle"])
        done = min(n, len(records))
    try:
        with torch.inference_mode(False):
            _oracle_path(ctx, crits, exact, range(done, n), rows, ckpt, progress)
    finally:
        if ckpt is not None:
            ckpt.close()
    res = CompareResult(rows)
    if own_paths:
        kw = dict(loss=ctx.loss, test=test, compensation=ctx.compensation, dtype=dtype, device=device,
                  progress=progress, units=units, output_activation=output_activation)
        for k, crit in enumerate([exact, *crits]):
            safe = re.sub(r"[^\w.-]", "_", crit.name)          # a folder name, whatever the criterion's name
            where = None if checkpoint is None else Path(checkpoint) / f"path-{k}-{safe}"
            res.paths[crit.name] = prune(model, X, T, crit, "iterative", stop=n, checkpoint=where, **kw)
        res.oracle = res.paths["brute-force"]
    res.seconds = time.perf_counter() - t0
    return res


def _oracle_path(ctx, crits, exact, steps: range, rows: list, ckpt, progress) -> None:
    """At each of ``steps`` of the oracle's own path: every criterion's scores against the exact ones
    (a row each), then the oracle's removal; each step is written to ``ckpt`` as it ends."""
    work = ctx.model
    with _progress.bar(total=steps.stop, initial=steps.start, desc="oracle path", progress=progress,
                       unit="step") as bar:
        for step in steps:
            scores = check_scores(exact.scores(ctx), work, exact.name)
            flat = torch.cat(scores).detach().cpu().numpy()
            active = ~np.isnan(flat)
            ol, ou, best = ranked(scores)[0]
            e = flat[active]
            mine_rows = []
            for crit in crits:
                mine = check_scores(crit.scores(ctx), work, crit.name)
                s = torch.cat(mine).detach().cpu().numpy()[active]
                cl, cu, _ = ranked(mine)[0]
                both = len(e) > 1 and np.ptp(e) > 0 and np.ptp(s) > 0
                mine_rows.append({"step": step, "criterion": crit.name,
                                  "spearman": spearman(s, e) if both else float("nan"),
                                  "kendall": kendall(s, e) if both else float("nan"),
                                  "agrees": (cl, cu) == (ol, ou),
                                  "regret": float(scores[cl][cu]) - best,
                                  "chosen_layer": cl, "chosen_unit": cu, "n_candidates": int(active.sum())})
            ctx.remove(ol, ou)
            if ckpt is not None:
                ckpt.append({"oracle": [ol, ou], "rows": mine_rows})
            rows += mine_rows
            bar.update(1)


compare = compare_criteria
