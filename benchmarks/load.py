"""Training and pruning on a busy machine: each run idle and beside one busy process, in one script.

    python benchmarks/load.py                    # every setting, 3 rounds, median
    python benchmarks/load.py --settings shrinknet torch --rounds 5

Each measurement is a fresh child process (OpenMP reads its waiting policy once, when torch loads), timed
inside the child around the work alone (not the imports):

* train      ``shrinknet.paper.train.train``: the 400-100-10 sigmoid net, 10 epochs on the 4,000 MNIST
             training images (Adam, batches of 50), the ``shrinknet train`` defaults;
* taylor2    an iterative taylor2 prune of 60 of its neurons on the 4,000 images;
* brute      an iterative exact brute-force prune of 60 neurons (the oracle's C kernel, its own OpenMP loop).

Settings (the child's environment):

* torch      torch's defaults: ``import torch`` runs before ``import shrinknet`` and no variable is set, so
             the OpenMP threads spin-wait for each other as they do in any torch program;
* shrinknet  ``import shrinknet`` first, nothing set: what the package chooses (``shrinknet._threads``);
* 1-thread   torch first, ``OMP_NUM_THREADS=1``.

"Busy" is ``python -c "while True: pass"`` started before the child and killed after it; on a 2-core
machine it takes one core. Every run prints a digest of its trained weights and removal orders: within a
setting the digests must agree, idle or busy (results unchanged by load). The shrinknet setting also pins
MKL's code path (``MKL_CBWR=AVX2,STRICT``), so its weights round differently in the last bits from torch's defaults
and its digest differs from theirs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SETTINGS = {
    "torch": ("torch", {}),
    "shrinknet": ("shrinknet", {}),
    "1-thread": ("torch", {"OMP_NUM_THREADS": "1"}),
}

CHILD = r"""
import sys, time, json, hashlib
first = sys.argv[1]
if first == "torch":
    import torch
import shrinknet, torch
from shrinknet.paper.data import load
from shrinknet.paper.train import TrainConfig, train
d = load("mnist")
X, T = torch.from_numpy(d.X_train), torch.from_numpy(d.T_train)
out = {"threads": torch.get_num_threads()}
h = hashlib.sha256()
t0 = time.perf_counter()
m = shrinknet.MLP([400, 100, 10], "sigmoid", "sigmoid", seed=0)
train(m, d.X_train, d.T_train, TrainConfig(epochs=10, lr=3e-3, batch_size=50), progress=False)
out["train"] = time.perf_counter() - t0
for p in m.parameters():
    h.update(p.detach().numpy().tobytes())
for crit, key in (("taylor2", "taylor2"), ("brute-force", "brute")):
    t0 = time.perf_counter()
    r = shrinknet.prune(m, X, T, criterion=crit, schedule="iterative", stop=shrinknet.Stop(n_neurons=60))
    out[key] = time.perf_counter() - t0
    h.update(repr(r.removed).encode())
out["digest"] = h.hexdigest()[:12]
print(json.dumps(out))
"""

WORK = ("train", "taylor2", "brute")


def child(setting: str, busy: bool) -> dict:
    first, env = SETTINGS[setting]
    env = {**{k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                                "MKL_CBWR")}, **env}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, first], env=env, capture_output=True, text=True,
                           check=True)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default: 3)")
    a = ap.parse_args(argv)
    runs = {(s, b): [] for s in a.settings for b in (False, True)}
    for _ in range(a.rounds):                      # interleaved, so that drifting load hits all alike
        for key in runs:
            runs[key].append(child(*key))
    print(f"{os.cpu_count()} CPUs; median of {a.rounds} rounds; seconds, busy / idle in brackets")
    print(f"{'setting':<10} {'threads':>7} " + " ".join(f"{w + ' idle':>13} {w + ' busy':>20}" for w in WORK)
          + "  digest")
    for s in a.settings:
        idle, busy = runs[(s, False)], runs[(s, True)]
        cells = []
        for w in WORK:
            ti, tb = statistics.median(r[w] for r in idle), statistics.median(r[w] for r in busy)
            cells.append(f"{ti:13.2f} {tb:12.2f} ({tb / ti:4.1f}x)")
        digests = sorted({r["digest"] for r in idle + busy})
        print(f"{s:<10} {idle[0]['threads']:>7} " + " ".join(cells) + "  " + ",".join(digests))


if __name__ == "__main__":
    main()
