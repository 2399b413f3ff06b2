"""The pruning half of the transformer examples (vit_fashion.py, gpt_chars.py): prune FFN neurons and
attention heads of a trained model without retraining, shrink it, report cost and quality, and
judge the criteria against the exact oracle.

Both examples call :func:`prune_and_report` with their model, a calibration set (the data the
criteria and the oracle see: training samples) and a function that measures quality on held-out data.
"""
from __future__ import annotations

import argparse
import time

import shrinknet

UNITS = ["ffn", "heads"]          # every block's FFN neurons and every attention module's heads


def parser(doc: str, quick: dict, seed_help: str, calib: int, stop_flag: str, stop_default: float, stop_help: str):
    """The command line both examples take: cache, seed, threads, quick run, and the pruning options."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--cache", default="examples/_cache", help="folder for the trained weights (default: examples/_cache)")
    ap.add_argument("--seed", type=int, default=0, help=f"seed for {seed_help} (default: 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    ap.add_argument("--quick", action="store_true", help=f"a tiny run: {quick}")
    ap.add_argument("--criterion", default="fisher", help="pruning criterion (default: fisher, Kwon et al. 2022)")
    ap.add_argument("--calib", type=int, default=calib, help=f"training samples the criteria see (default: {calib})")
    ap.add_argument(stop_flag, type=float, default=stop_default, help=f"{stop_help} (default: {stop_default})")
    ap.add_argument("--fraction", type=float, default=None, help="remove at most this fraction of the units")
    return ap


def parse(ap, argv):
    """The options; ``--quick`` also prunes quickly: 64 calibration samples, at most a fifth of the units."""
    a = ap.parse_args(argv)
    if a.quick:
        a.calib = min(a.calib, 64)
        a.fraction = 0.2 if a.fraction is None else a.fraction
    return a


def prune_and_report(model, calib, quality, *, criterion: str, stop: shrinknet.Stop, compare_criteria,
                     compare_samples: int, compare_steps: int, example):
    """Prune ``model`` on ``calib = (X, T)`` with ``criterion`` until ``stop``, shrink it and print:
    what was kept, ``quality(model)`` before and after (a dict of named numbers), parameters, FLOPs
    and latency, and a table of ``compare_criteria`` against the oracle over its first
    ``compare_steps`` removals on ``compare_samples`` calibration samples. Returns a dict of it all."""
    X, T = calib
    t0 = time.perf_counter()
    result = shrinknet.prune(model, X, T, units=UNITS, criterion=criterion, stop=stop, progress=True)
    small = shrinknet.shrink(model, result)
    seconds = time.perf_counter() - t0
    kept = {name: f"{len(k)}/{size}" for (name, k), size in zip(result.keep_by_name().items(), result.hidden_sizes)}
    print(f"\n{criterion} removed {result.n_removed} of {result.initially_active} units in {seconds:.1f} s "
          f"({result.stop_reason}); kept per group:")
    for name, k in kept.items():
        print(f"  {name}: {k}")
    before, after = quality(model), quality(small)
    for key in before:
        print(f"{key}: {before[key]:.4f} -> {after[key]:.4f}")
    report = shrinknet.compare_models(model, small, example, kept=result)
    print(report)

    n = compare_samples
    Xc = {k: v[:n] for k, v in X.items()} if isinstance(X, dict) else X[:n]
    t0 = time.perf_counter()
    cmp = shrinknet.compare(model, Xc, T[:n], compare_criteria, steps=compare_steps, units=UNITS, own_paths=False)
    print(f"\ncriteria against the exact oracle, first {compare_steps} removals on {n} calibration samples "
          f"({time.perf_counter() - t0:.0f} s; spearman = rank correlation with the oracle's exact changes, "
          f"agrees = share of steps where the criterion picks the oracle's unit, regret = extra error of its pick):")
    rows = cmp.summary_rows()
    print(f"{'criterion':<18}{'spearman':>10}{'agrees':>10}{'regret':>12}")
    for r in rows:
        print(f"{r['criterion']:<18}{r['spearman']:>10.3f}{r['agrees']:>10.2f}{r['regret']:>12.4g}")
    return {"result": result, "small": small, "report": report, "before": before, "after": after,
            "compare": rows, "kept": kept}
