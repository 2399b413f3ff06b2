"""Literal brute force vs the fast exact oracle, for a full iterative (serial) prune.

    python benchmarks/oracle.py                 # all four nets, CPU
    python benchmarks/oracle.py --nets 400-100-10 400-50-50-10
    python benchmarks/oracle.py --device cuda --nets 784-300-100-10
    python benchmarks/oracle.py --approximate --nets 400-100-10 400-50-50-10   # + the approximate options

For every net it prints the wall time and peak memory of the fast path's full prune (every hidden
neuron, iterative re-ranking, float32) and of the literal definition (one full forward pass per
candidate). The literal path's cost per candidate does not depend on how many neurons are already
removed, so where running it in full would take too long it is timed on a sample of candidates and
extrapolated to the K(K+1)/2 candidate evaluations of a full prune; the output says which. Each
measurement runs in its own process so that peak memory (max RSS, or CUDA peak allocation) is its own,
and both paths first make the same untimed two-step prune on 256 samples (loading the compiled kernel,
starting the thread pool, first allocations), so each time is the path's steady cost, not a process's
start-up. A fast prune of under 10 s is timed 5 times before the literal path's run and 5 times after
it, and the median of the 10 kept (the range is printed): on a shared machine one run's time moves by
+-20 % and more over a minute, which the literal path's long run averages out by itself.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import torch

CACHE = Path(__file__).parent / ".cache"
NETS = {  # name: (data set, sizes, epochs, literal path run in full?)
    "400-100-10": ("mnist", [400, 100, 10], 60, True),
    "400-50-50-10": ("mnist", [400, 50, 50, 10], 60, True),
    "784-300-100-10": ("fashion-mnist", [784, 300, 100, 10], 3, False),
    "784-1000-1000-10": ("fashion-mnist", [784, 1000, 1000, 10], 2, False),
}


def trained(name: str):
    """The net, trained once with seed 0 and kept in benchmarks/.cache; and its training data."""
    import shrinknet
    from shrinknet.paper.data import load
    from shrinknet.paper.train import TrainConfig, train

    data, sizes, epochs, _ = NETS[name]
    d = load(data)
    path = CACHE / f"{name}.safetensors"
    if path.exists():
        return shrinknet.MLP.load(path), d
    m = shrinknet.MLP(sizes, "sigmoid", "sigmoid", seed=0)
    bs = 50 if data == "mnist" else 128
    train(m, d.X_train, d.T_train, TrainConfig(epochs=epochs, lr=3e-3 if data == "mnist" else 1e-3,
                                               batch_size=bs, seed=0))
    m.save(path)
    return m, d


REPEATS, REPEAT_BELOW = 5, 10.0   # fast-path prunes shorter than REPEAT_BELOW seconds: median of REPEATS runs


def _peak(device) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB


def warm_up(m, X, T, criterion, device):
    """The untimed two-step prune both paths make first (see the module docstring), on 256 samples:
    enough to load and start everything, and quick on the largest net."""
    import shrinknet
    shrinknet.prune(m, X[:256], T[:256], criterion, "iterative", stop=2, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_fast(name, device, max_seconds, q):
    import shrinknet
    m, d = trained(name)
    X = torch.tensor(d.X_train, device=device)
    T = torch.tensor(d.T_train, device=device)
    K = m.n_active()
    warm_up(m, X, T, "brute-force", device)
    steps = []

    inner = shrinknet.criteria.get_criterion("brute-force")
    counted = [False]

    def check(model):              # stops the run once the time budget is spent
        if time.perf_counter() - t_start > max_seconds:
            raise TimeoutError
        steps.append(model.n_active())

    def scores(ctx):               # scoring every neuron (where the serial path does not apply)
        if not counted[0]:
            check(ctx.model)
        counted[0] = False
        return inner.scores(ctx)

    def best(ctx):                 # the serial path the loop uses for brute-force
        check(ctx.model)
        pick = inner.best(ctx)
        counted[0] = pick is None
        return pick
    timer = shrinknet.criteria.Criterion("brute-force", scores, best=best)

    t0 = t_start = time.perf_counter()
    try:
        r = shrinknet.prune(m, X, T, timer, "iterative", device=device)
        removed, full = r.removed, True
    except TimeoutError:
        removed, full = None, False
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    walls = [time.perf_counter() - t0]
    # a prune of a few seconds is timed again (see the module docstring)
    while full and walls[0] < REPEAT_BELOW and len(walls) < REPEATS:
        t0 = time.perf_counter()
        shrinknet.prune(m, X, T, "brute-force", "iterative", device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
    # candidate evaluations done: sum of active neurons at each step
    done = sum(steps) if full else sum(steps[:-1])
    q.put({"wall": float(np.median(walls)), "walls": walls, "peak": _peak(device), "full": full, "removed": removed,
           "K": K, "evals": done, "total_evals": K * (K + 1) // 2})


def run_literal(name, device, sample, full_run, q):
    import shrinknet
    m, d = trained(name)
    m = m.to(device)
    X = torch.tensor(d.X_train, device=device)
    T = torch.tensor(d.T_train, device=device)
    K = m.n_active()
    if full_run:
        warm_up(m, X, T, "brute-force-literal", device)
        t0 = time.perf_counter()
        r = shrinknet.prune(m, X, T, "brute-force-literal", "iterative", device=device)
        q.put({"wall": time.perf_counter() - t0, "peak": _peak(device), "full": True, "removed": r.removed, "K": K})
        return
    # time `sample` literal candidate evaluations: set one gate to 0, full forward, sum the loss
    rng = np.random.default_rng(0)
    cands = [(l, int(u)) for l, k in enumerate(m.hidden_sizes) for u in range(k)]
    pick = [cands[i] for i in rng.choice(len(cands), size=min(sample, len(cands)), replace=False)]
    from shrinknet import oracle
    from shrinknet.context import PruningContext
    ctx = PruningContext(m, X, T, "sse")
    oracle.literal_errors(ctx, 0, [0])  # warm-up
    t0 = time.perf_counter()
    for l, u in pick:
        oracle.literal_errors(ctx, l, [u])
    per = (time.perf_counter() - t0) / len(pick)
    q.put({"wall": per * K * (K + 1) // 2, "per_candidate": per, "peak": _peak(device), "full": False,
           "removed": None, "K": K, "sample": len(pick)})


def approximate_report(name: str, device: str) -> None:
    """The APPROXIMATE options against the exact oracle: time, decisions, error drift."""
    import shrinknet
    from shrinknet.paper.analysis import oracle_agreement

    m, d = trained(name)
    X, T = torch.tensor(d.X_train, device=device), torch.tensor(d.T_train, device=device)
    exact = shrinknet.prune(m, X, T, "brute-force", device=device)
    print(f"  approximate options (exact fast path: {exact.seconds:.2f} s):")
    for crit in ("brute-force-subset", "brute-force-topk"):
        r = shrinknet.prune(m, X, T, crit, device=device)
        agree = oracle_agreement(m, X, T, r)
        gap = (np.array(r.errors) - np.array(exact.errors)) / np.maximum(np.array(exact.errors), 1e-12)
        half = r.n_removed // 2
        print(f"    {crit:19s} {r.seconds:6.2f} s ({exact.seconds / r.seconds:4.1f}x the exact path), "
              f"oracle's choice at {100 * agree['share']:5.1f} % of steps, error vs exact serial prune: "
              f"{100 * gap[half - 1]:+.1f} % at 50 % removed, mean {100 * gap.mean():+.1f} %, "
              f"max {100 * gap.max():+.1f} %")


def in_child(fn, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def fmt_time(s: float) -> str:
    return f"{s:8.2f} s" if s < 10 else f"{s:8.1f} s" if s < 3600 else f"{s / 3600:8.1f} h"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=900,
                    help="stop a fast-path prune after this long and extrapolate (default 900)")
    ap.add_argument("--approximate", action="store_true",
                    help="also measure the APPROXIMATE options (subset, top-k re-scoring) against the exact oracle")
    ap.add_argument("--literal-sample", type=int, default=20,
                    help="literal candidate evaluations timed where the literal prune is not run in full")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, device {a.device}, {torch.get_num_threads()} CPU threads, float32")
    for name in a.nets:
        trained(name)  # train (and cache) outside the timed children
        fast = in_child(run_fast, name, a.device, a.max_seconds)
        lit = in_child(run_literal, name, a.device, a.literal_sample, NETS[name][3] and a.device == "cpu")
        if len(fast["walls"]) > 1:      # a quick fast path is timed before and after the literal one
            fast["walls"] += in_child(run_fast, name, a.device, a.max_seconds)["walls"]
            fast["wall"] = float(np.median(fast["walls"]))
        K = fast["K"]
        fast_wall = fast["wall"] if fast["full"] else fast["wall"] * fast["total_evals"] / max(1, fast["evals"])
        print(f"\n{name}: {K} hidden neurons, full iterative brute-force prune ({K * (K + 1) // 2} candidate evaluations)")
        runs = fast["walls"]
        print(f"  fast exact : {fmt_time(fast_wall)}  peak {fast['peak']:7.0f} MiB"
              + (f"  (median of {len(runs)} runs, {min(runs):.2f}-{max(runs):.2f} s)" if len(runs) > 1 else "")
              + ("" if fast["full"] else f"  (stopped after {fast['wall']:.0f} s, {fast['evals']} evaluations; "
                 "extrapolated linearly in evaluations, an upper bound since later steps are cheaper)"))
        how = "run in full" if lit["full"] else (f"extrapolated from {lit['sample']} timed candidates, "
                                                 f"{lit['per_candidate'] * 1000:.1f} ms each")
        print(f"  literal    : {fmt_time(lit['wall'])}  peak {lit['peak']:7.0f} MiB  ({how})")
        print(f"  speed-up   : {lit['wall'] / fast_wall:8.1f}x")
        if fast["removed"] is not None and lit["removed"] is not None:
            same = sum(a == b for a, b in zip(fast["removed"], lit["removed"]))
            first = next((i for i, (a, b) in enumerate(zip(fast["removed"], lit["removed"])) if a != b), None)
            print(f"  decisions  : {same}/{K} identical" + ("" if first is None else
                  f" (first difference at step {first + 1}: float32 rounding between two exact computations)"))
        if a.approximate:
            approximate_report(name, a.device)


if __name__ == "__main__":
    main()
