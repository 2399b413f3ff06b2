"""The main job: train the paper's 400-100-10 sigmoid net on the bundled MNIST subset, prune it
with every paper criterion under both algorithms, and write curves and a summary table.

    shrinknet demo --out shrinknet-demo
"""
from __future__ import annotations

import time
from pathlib import Path

from . import analysis
from .. import plots
from .._io import resumable, write_text
from .data import check_available, load
from ..models import MLP
from ..pruning import prune
from .train import TrainConfig, train

CRITERIA = ("brute-force", "taylor1", "taylor2", "taylor2-exact")
SCHEDULES = ("single", "iterative")
TRAIN = TrainConfig(epochs=60, lr=3e-3, batch_size=50, loss="sse", seed=0)


def summary_rows(results, n_total: int) -> list[dict]:
    rows = []
    for r in results:
        half = n_total // 2
        rows.append({
            "criterion": r.criterion, "schedule": r.schedule,
            "removable_acc_drop_1pt": analysis.removable(r, max_accuracy_drop=0.01),
            "removable_error_plus_10pct": analysis.removable(r, max_error_increase=0.10),
            "removable_test_acc_drop_1pt": analysis.removable(r, max_accuracy_drop=0.01, test=True),
            "train_acc_at_50pct": round(r.accuracies[half - 1], 4) if r.n_removed >= half else "",
            "test_acc_at_50pct": round(r.test_accuracies[half - 1], 4) if r.n_removed >= half else "",
            "seconds": round(r.seconds, 2),
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    keys = list(rows[0])
    return "\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n"


def run_demo(out="shrinknet-demo", quick: bool = False, progress: bool | None = None, log=print) -> list[dict]:
    """Run the demo into the folder ``out``. While it runs, ``out/INCOMPLETE.txt`` says that the folder
    may mix this run's files with an earlier one's; an interrupted demo resumes its prunes from
    ``out/.partial``."""
    check_available("mnist")                    # the optional packages first, not after the work
    plots.check_available()
    out = Path(out)
    with resumable(out, "shrinknet demo" + (" --quick" if quick else "")) as partial:
        return _run(out, quick, progress, log, partial)


def _run(out: Path, quick: bool, progress, log, partial: Path) -> list[dict]:
    t0 = time.perf_counter()
    data = load("mnist")
    if quick:
        data = data.subset(1000, 300)
    log(f"data: {data.description}: {len(data.X_train)} train / {len(data.X_test)} test images, "
        f"{data.n_inputs} inputs")
    model = MLP([data.n_inputs, 100, 10], "sigmoid", "sigmoid", seed=0)
    cfg = TrainConfig(**{**TRAIN.to_dict(), "epochs": 15 if quick else TRAIN.epochs})
    hist = train(model, data.X_train, data.T_train, cfg, progress=progress)
    model.save(out / "model.safetensors")
    log(f"trained 400-100-10 sigmoid net: train accuracy {hist[-1]['accuracy']:.4f}, "
        f"SSE {hist[-1]['loss']:.2f} ({time.perf_counter() - t0:.1f}s)")

    results = []
    for sched in SCHEDULES:
        for crit in CRITERIA:
            r = prune(model, data.X_train, data.T_train, criterion=crit, schedule=sched,
                      test=(data.X_test, data.T_test), progress=progress, checkpoint=partial / f"{crit}_{sched}")
            r.save_json(out / "results" / f"{crit}_{sched}.json")
            r.save_csv(out / "results" / f"{crit}_{sched}.csv")
            results.append(r)
            log(f"  {crit:14s} {sched:9s} {r.seconds:6.2f}s")

    plots.plot_curves(results, out / "curves.png",
                      title="400-100-10 sigmoid, MNIST subset (evaluation = training set)")
    plots.plot_curves(results, out / "curves_test.png", title="Same runs, held-out test set", test=True)
    it = {r.criterion: r for r in results if r.schedule == "iterative"}
    surfaces = {c: analysis.gain_surfaces(model, data.X_train, data.T_train, it[c], every=10,
                                          gains=[i / 20 for i in range(201)])
                for c in ("brute-force", "taylor1", "taylor2")}
    plots.plot_gain_surfaces(surfaces, out / "gain_surfaces.png",
                             title="Error while the gain of the neuron removed at every 10th step sweeps 0..10")
    rows = summary_rows(results, 100)
    write_text(out / "summary.csv", csv_table(rows))
    header = (f"# shrinknet demo\n\n400-100-10 sigmoid net, {data.description}, {len(data.X_train)} training "
              f"images (the evaluation set, as in the paper) and {len(data.X_test)} test images.\n"
              f"Start: train accuracy {results[0].initial_accuracy:.4f}, test accuracy "
              f"{results[0].initial_test_accuracy:.4f}, train SSE {results[0].initial_error:.2f}.\n\n"
              "`removable_*`: neurons removed before the first step that breaks the limit.\n\n")
    write_text(out / "summary.md", header + markdown_table(rows) +
               f"\nTotal wall time {time.perf_counter() - t0:.1f}s.\n")
    log("\n" + markdown_table(rows))
    log(f"wrote {out}/ (curves.png, curves_test.png, gain_surfaces.png, summary.csv, summary.md, results/) "
        f"in {time.perf_counter() - t0:.1f}s")
    return rows
