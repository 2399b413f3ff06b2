"""Which training regime makes the paper's Taylor failures appear? (issue 20, docs/REPRODUCTION.md)

The paper does not say how it trained its MNIST nets beyond "compressed" 20x20 inputs and, for the
one-vs-all nets, training until it no longer made progress. This trains the 400-100-10 sigmoid net of
mnist-1x100 under several regimes and prints, for iterative and single-ranking prunes with brute force,
1st and 2nd order, the training accuracy at 30 / 50 / 60 % of the neurons removed (the paper, iterative:
brute force ~0.97 at 60 %, 2nd order ~0.80 and 1st order ~0.32 at 50 %).

    python benchmarks/training_regimes.py [--regimes adam-crop sgd-stall-compress ...]
    python benchmarks/training_regimes.py --hypotheses [h1-no-bias h2-full-batch-f64]   (issue 31)
    python benchmarks/training_regimes.py --hypotheses h1-no-bias --seeds 0 1 2
    python benchmarks/training_regimes.py --hypotheses h2-full-batch-f64 --max-epochs 12000
"""
import argparse
import time

import torch

import shrinknet  # noqa: F401  (before torch: thread and MKL settings)
from shrinknet import MLP, prune
from shrinknet.paper.data import load
from shrinknet.paper.train import TrainConfig, train

REGIMES = {
    "adam-crop": (False, TrainConfig(epochs=60, lr=3e-3, batch_size=50, seed=0)),
    "adam-compress": (True, TrainConfig(epochs=60, lr=3e-3, batch_size=50, seed=0)),
    "adam-stall-compress": (True, TrainConfig(epochs=1000, lr=3e-3, batch_size=50, seed=0, patience=20)),
    "sgd-stall-compress": (True, TrainConfig(epochs=1000, lr=0.5, momentum=0.9, batch_size=50, optimizer="sgd",
                                             seed=0, patience=20)),
    "sgd-plain-stall-compress": (True, TrainConfig(epochs=1000, lr=2.0, momentum=0.0, batch_size=50, optimizer="sgd",
                                                   seed=0, patience=50)),
    "adam-hot-stall-compress": (True, TrainConfig(epochs=1000, lr=1e-2, batch_size=50, seed=0, patience=50)),
}
#: issue 31's two untried explanations of the gap at 50 % removed (paper: 1st ~0.32, 2nd ~0.80; here 0.944 / 0.978):
#: (H1) no biases anywhere, as in the paper's equations: the paper-faithful MNIST regime (plain SGD until it
#: stalls) with every bias held at 0; (H2) trained further, to >= 0.998 training accuracy, full batch and in
#: float64, and ranked on the same (training) data
HYPOTHESES = {
    "h1-no-bias": (TrainConfig(epochs=1000, lr=2.0, momentum=0.0, batch_size=50, optimizer="sgd", seed=0,
                               patience=20), torch.float32, True),
    "h2-full-batch-f64": (TrainConfig(epochs=3000, lr=1e-2, batch_size=4000, seed=0, target_accuracy=0.998),
                          torch.float64, False),
}
AT = (30, 50, 60)
#: one-vs-all nets (raw 0-255 pixels, 784-100-2 softmax): stopped at the paper's accuracy after a few
#: Adam steps (our first regime), or trained until training stalls as the paper says it did
DIGIT_REGIMES = {
    "adam-target": TrainConfig(epochs=30, lr=1e-3, batch_size=50, seed=0, target_accuracy=0.9757),
    "adam-stall": TrainConfig(epochs=500, lr=1e-3, batch_size=50, seed=0, patience=20),
    "sgd-stall": TrainConfig(epochs=500, lr=0.1, momentum=0.9, batch_size=50, optimizer="sgd", seed=0,
                             patience=20),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    ap.add_argument("--digits", nargs="*", default=None, choices=list(DIGIT_REGIMES),
                    help="instead, the one-vs-all digit-0 net under these regimes (none named: all)")
    ap.add_argument("--hypotheses", nargs="*", default=None, choices=list(HYPOTHESES),
                    help="instead, issue 31's explanations H1 / H2 of the Taylor gap (none named: both)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (with --hypotheses)")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="with --hypotheses: at most this many epochs instead of the regime's own cap")
    a = ap.parse_args()
    if a.digits is not None:
        return digits(a.digits or list(DIGIT_REGIMES))
    if a.hypotheses is not None:
        return hypotheses(a.hypotheses or list(HYPOTHESES), a.seeds, a.max_epochs)
    print("| regime | epochs | train acc. | algorithm | criterion | " + " | ".join(f"acc. at {p} %" for p in AT)
          + " |\n|---|---|---|---|---|" + "---|" * len(AT))
    for name in a.regimes:
        compress, cfg = REGIMES[name]
        d = load("mnist", compress=compress)
        m = MLP([400, 100, 10], "sigmoid", "sigmoid", seed=0)
        t0 = time.perf_counter()
        hist = train(m, d.X_train, d.T_train, cfg, progress=False)
        secs = time.perf_counter() - t0
        for sched in ("iterative", "single"):
            for crit in ("brute-force", "taylor1", "taylor2"):
                r = prune(m, d.X_train, d.T_train, crit, sched, stop=max(AT), progress=False)
                accs = " | ".join(f"{r.accuracies[p - 1]:.3f}" for p in AT)
                print(f"| {name} | {len(hist)} ({secs:.0f} s) | {hist[-1]['accuracy']:.4f} | {sched} | {crit} "
                      f"| {accs} |",
                      flush=True)


def hypotheses(names, seeds, max_epochs=None):
    """mnist-1x100 (compressed inputs) under H1 / H2: the iterative prunes' training accuracy at 30 / 50 / 60 %."""
    from dataclasses import replace
    d = load("mnist", compress=True)
    print("| regime | seed | epochs | train acc. | criterion | " + " | ".join(f"acc. at {p} %" for p in AT)
          + " |\n|---|---|---|---|---|" + "---|" * len(AT))
    for name in names:
        cfg, dtype, no_bias = HYPOTHESES[name]
        cfg = cfg if max_epochs is None else replace(cfg, epochs=max_epochs)
        for seed in seeds:
            m = MLP([400, 100, 10], "sigmoid", "sigmoid", seed=seed, dtype=dtype)
            if no_bias:                                # the paper's equations: no bias terms at all
                for lin in m.layers:
                    lin.bias.data.zero_()
                    lin.bias.requires_grad_(False)
            t0 = time.perf_counter()
            hist = train(m, d.X_train, d.T_train, replace(cfg, seed=seed), progress=False)
            secs = time.perf_counter() - t0
            if no_bias:
                assert all(float(lin.bias.abs().max()) == 0 for lin in m.layers)
            for crit in ("brute-force", "taylor1", "taylor2"):
                r = prune(m, d.X_train, d.T_train, crit, "iterative", stop=max(AT), progress=False)
                accs = " | ".join(f"{r.accuracies[p - 1]:.3f}" for p in AT)
                print(f"| {name} | {seed} | {len(hist)} ({secs:.0f} s) | {hist[-1]['accuracy']:.4f} | {crit} | {accs} |",
                      flush=True)


def digits(names, digit: int = 0):
    """The one-vs-all effects: brute force lowering the error first, the 1st order exploding early."""
    import numpy as np
    d = load(f"mnist-digit-{digit}", normalize=False)
    print("| regime | epochs | train acc. | brute force: lowest error in the first 10 % / start | at or below start "
          "until | taylor1: highest error in the first 10 % / start | taylor2 below taylor1 |\n"
          "|---|---|---|---|---|---|---|")
    for name in names:
        m = MLP([784, 100, 2], "sigmoid", "softmax", seed=0)
        t0 = time.perf_counter()
        hist = train(m, d.X_train, d.T_train, DIGIT_REGIMES[name], progress=False)
        secs = time.perf_counter() - t0
        r = {c: prune(m, d.X_train, d.T_train, c, "iterative", progress=False) for c in ("brute-force", "taylor1",
                                                                                         "taylor2")}
        E = {c: np.array([r[c].initial_error, *r[c].errors]) for c in r}
        bf = E["brute-force"]
        above = np.flatnonzero(bf[1:] > bf[0])
        print(f"| {name} | {len(hist)} ({secs:.0f} s) | {hist[-1]['accuracy']:.4f} | {bf[1:11].min() / bf[0]:.3f} | "
              f"{above[0] if above.size else 100} % | {E['taylor1'][1:11].max() / bf[0]:.2f} | "
              f"{np.mean(E['taylor2'][1:] < E['taylor1'][1:]):.0%} |", flush=True)


if __name__ == "__main__":
    main()
