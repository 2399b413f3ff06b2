"""The pruning half of the transformer examples (vit_fashion.py, gpt_chars.py): prune FFN neurons and
attention heads of a trained model without retraining, shrink it, report cost and quality, and
judge the criteria against the exact oracle.

Both examples call :func:`prune_and_report` with their model, a calibration set (the data the
criteria and the oracle see: training samples) and a function that measures quality on held-out data.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    ap.add_argument("--fraction", type=float, default=None, help="remove at most this fraction of the units (counted "
                    "in units removed)")
    ap.add_argument("--keep-flops", type=float, default=None, help="a budget: stop once at most this fraction of the "
                    "model's FLOPs per sample is kept (counted on the shrunk model)")
    ap.add_argument("--keep-params", type=float, default=None, help="a budget: stop once at most this fraction of the "
                    "model's parameters is kept")
    ap.add_argument("--cost", choices=["params", "flops"], default=None, help="cost-aware choice: rank units by score "
                    "per parameter / FLOP their removal saves (default: by score alone, every unit counting one)")
    ap.add_argument("--compensation", choices=["none", "mean", "lstsq"], default="none",
                    help="fold each removed unit's mean output into the next bias (mean) or refit (lstsq); default none")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison of criteria with the exact oracle")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the figures printed to this JSON file")
    return ap


def parse(ap, argv):
    """The options; ``--quick`` also prunes quickly: 64 calibration samples, at most a fifth of the units."""
    a = ap.parse_args(argv)
    if a.quick:
        a.calib = min(a.calib, 64)
        a.fraction = 0.2 if a.fraction is None else a.fraction
    return a


def stop_of(a, **limits) -> shrinknet.Stop:
    """The examples' stop: their own limit (``limits``), ``--fraction`` and the budgets."""
    return shrinknet.Stop(fraction=a.fraction, params=a.keep_params, flops=a.keep_flops, **limits)


def prune_and_report(model, calib, quality, *, criterion: str, stop: shrinknet.Stop, compare_criteria,
                     compare_samples: int, compare_steps: int, example, cost: str | None = None,
                     compensation: str = "none", compare: bool = True, json_path=None):
    """Prune ``model`` on ``calib = (X, T)`` with ``criterion`` until ``stop`` (``cost``: the cost-aware
    choice; ``compensation`` on), shrink it and print: what was kept, ``quality(model)`` before and
    after (a dict of named numbers), parameters, FLOPs and latency, and (``compare``) a table of
    ``compare_criteria`` against the oracle over its first ``compare_steps`` removals on
    ``compare_samples`` calibration samples. Returns a dict of it all (also written to ``json_path``)."""
    X, T = calib
    t0 = time.perf_counter()
    result = shrinknet.prune(model, X, T, units=UNITS, criterion=criterion, stop=stop, progress=True, cost=cost,
                             compensation=compensation)
    # with compensation the refit weights are the result's own model's
    small = shrinknet.shrink(model if compensation == "none" else result.model, result)
    seconds = time.perf_counter() - t0
    kept = {name: f"{len(k)}/{size}" for (name, k), size in zip(result.keep_by_name().items(), result.hidden_sizes)}
    print(f"\n{criterion} ({'cost-aware: ' + cost if cost else 'by score'}, compensation {compensation}) removed "
          f"{result.n_removed} of {result.initially_active} units in {seconds:.1f} s ({result.stop_reason}); kept per group:")
    for name, k in kept.items():
        print(f"  {name}: {k}")
    heads = [u.kind == "heads" for u in result.model.units]
    gone = {kind: sum(size - len(k) for k, size, h in zip(result.keep().values(), result.hidden_sizes, heads)
                      if h == (kind == "heads")) for kind in ("heads", "ffn")}
    print(f"removed: {gone['heads']} heads, {gone['ffn']} FFN neurons")
    before, after = quality(model), quality(small)
    for key in before:
        print(f"{key}: {before[key]:.4f} -> {after[key]:.4f}")
    report = shrinknet.compare_models(model, small, example, kept=result)
    print(report)
    out = {"result": result, "small": small, "report": report, "before": before, "after": after, "kept": kept,
           "removed": gone, "seconds": seconds}
    if json_path:
        figures = {"criterion": criterion, "cost": cost, "compensation": compensation, "stop": stop.__dict__,
                   "stop_reason": result.stop_reason, "n_removed": result.n_removed, "removed": gone, "kept": kept,
                   "before": before, "after": after, "params": [report.before.params, report.after.params],
                   "flops": [report.before.flops, report.after.flops], "seconds": round(seconds, 1),
                   "calibration_error": [result.initial_error, result.final_error],
                   "calibration_accuracy": [result.initial_accuracy, result.final_accuracy]}
        Path(json_path).write_text(json.dumps(figures, indent=1))
        result.save_csv(Path(json_path).with_suffix(".csv"))        # the steps: error, accuracy, FLOPs kept
    if not compare:
        return out

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
    return {**out, "compare": rows}
