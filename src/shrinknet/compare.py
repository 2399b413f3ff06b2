"""Judge pruning criteria against the exact oracle.

Along the oracle's own removal path (exact serial brute force), at every step each criterion scores
the remaining neurons in that very state; we record its Spearman and Kendall rank correlation with
the exact change in error of every remaining neuron, whether its top choice is the oracle's, and its
regret (the exact change its choice would cause minus the oracle's). Each criterion's own whole
pruning path is recorded too.

    >>> res = shrinknet.compare(model, X, T, criteria=["taylor1", "taylor2", "l1-out"])
    >>> res.table.groupby("criterion")[["spearman", "agrees", "regret"]].mean()
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import compensation as comp
from ._validation import ShrinkNetError
from .criteria import criterion_name, get_criterion
from .gating import GatedModel
from .pruning import _check_scores, _flat_order, prepare, prune
from .results import PruneResult


@dataclass
class CompareResult:
    """``table``: one row per (step, criterion) along the oracle's path; ``paths``: each criterion's
    own pruning run (and the oracle's, under "brute-force"); ``path_table``: their errors per step."""
    table: "object"
    paths: dict = field(default_factory=dict)
    oracle: PruneResult | None = None
    seconds: float = 0.0

    @property
    def path_table(self):
        import pandas as pd
        rows = []
        for name, r in self.paths.items():
            for row in r.rows():
                rows.append({"criterion": name, "step": row["step"], "percent_removed": row["percent_removed"],
                             "error": row["error"], "accuracy": row["accuracy"],
                             "test_error": row["test_error"], "test_accuracy": row["test_accuracy"]})
        return pd.DataFrame(rows)

    def summary(self):
        """Mean over the oracle's path, per criterion."""
        return (self.table.groupby("criterion", sort=False)[["spearman", "kendall", "agrees", "regret"]]
                .mean().reset_index())

    def save(self, out) -> list[Path]:
        from .paper import plots
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "compare.csv", index=False)
        self.path_table.to_csv(out / "paths.csv", index=False)
        self.summary().to_csv(out / "summary.csv", index=False)
        files = [out / "compare.csv", out / "paths.csv", out / "summary.csv"]
        files.append(plots.plot_comparison(self.table, out / "compare.png"))
        files.append(plots.plot_curves(list(self.paths.values()), out / "paths.png",
                                       title="Each criterion's own pruning path (iterative)"))
        return files


def compare(model, X, T, criteria=("taylor1", "taylor2", "taylor2-exact"), loss: str = "sse", *,
            steps: int | None = None, test=None, own_paths: bool = True, compensation: str = "none",
            units=None, output_activation=None, dtype=None, device=None, progress: bool = False) -> CompareResult:
    """Compare `criteria` with the exact oracle along its removal path.

    Parameters
    ----------
    criteria : names or callables (see :func:`shrinknet.available_criteria`)
    steps : compare at the first `steps` oracle steps only (default: every step)
    test : (X_test, T_test), tracked on every criterion's own path
    own_paths : also run every criterion's own iterative pruning path
    compensation : {"none", "mean", "lstsq"}, scoring and removing with that compensation on
    units, output_activation : for models other than the MLP class, as in :func:`shrinknet.prune`

    Returns
    -------
    CompareResult whose ``.table`` (pandas DataFrame) has the columns step, criterion, spearman,
    kendall, agrees, regret, chosen_layer, chosen_unit, n_candidates.
    """
    import pandas as pd
    from scipy.stats import kendalltau, spearmanr

    if not criteria:
        raise ShrinkNetError("criteria: expected at least one criterion, got none")
    mode = comp.check_mode(compensation)
    src, work, X, T = prepare(model, X, T, loss, dtype, device, units, output_activation)
    if isinstance(work, GatedModel) and mode != "none":
        raise ShrinkNetError(f"compensation {mode!r}: works on shrinknet.MLP only; expected 'none'")
    crits = [(criterion_name(c), get_criterion(c, work)) for c in criteria]
    work.compensation = mode
    oracle = get_criterion("brute-force", work)
    n = work.n_active() if steps is None else min(int(steps), work.n_active())
    rows = []
    t0 = time.perf_counter()
    for step in tqdm(range(n), desc="oracle path", disable=not progress, leave=False):
        exact = _check_scores(oracle(work, X, T, loss), work, "brute-force")
        flat = torch.cat(exact).detach().cpu().numpy()
        active = ~np.isnan(flat)
        ol, ou, best = _flat_order(exact)[0]
        for name, fn in crits:
            scores = _check_scores(fn(work, X, T, loss), work, name)
            s = torch.cat(scores).detach().cpu().numpy()[active]
            cl, cu, _ = _flat_order(scores)[0]
            e = flat[active]
            both = len(e) > 1 and np.ptp(e) > 0 and np.ptp(s) > 0
            rows.append({"step": step, "criterion": name,
                         "spearman": float(spearmanr(s, e)[0]) if both else float("nan"),
                         "kendall": float(kendalltau(s, e)[0]) if both else float("nan"),
                         "agrees": (cl, cu) == (ol, ou),
                         "regret": float(exact[cl][cu]) - best,
                         "chosen_layer": cl, "chosen_unit": cu, "n_candidates": int(active.sum())})
        comp.remove(work, work.cache(X) if mode != "none" else None, ol, ou)
    table = pd.DataFrame(rows)
    res = CompareResult(table)
    if own_paths:
        kw = dict(loss=loss, test=test, compensation=mode, dtype=dtype, device=device, progress=progress,
                  units=units, output_activation=output_activation)
        res.oracle = res.paths["brute-force"] = prune(src, X, T, "brute-force", "iterative", stop=n, **kw)
        for name, fn in crits:
            res.paths[name] = prune(src, X, T, fn, "iterative", stop=n, **kw)
            res.paths[name].criterion = name
    res.seconds = time.perf_counter() - t0
    return res
