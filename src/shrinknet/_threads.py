"""How many threads, and how they wait: chosen before torch loads, for a machine others share too.

torch's OpenMP threads spin-wait for each other between parallel regions. On a machine where another
process holds a core, a spinning thread burns the time slice its partner needs, and small operations
(an MLP's batch of 50, one pruning step) slow down 3-5x (``benchmarks/load.py``; figures in
docs/PERFORMANCE.md). Two choices, made here because OpenMP reads them once, when torch is loaded:

* ``OMP_WAIT_POLICY=PASSIVE``: a thread with nothing to do sleeps instead of spinning. Under load the
  same work takes 1.0-1.4x its idle time instead of 2-5x; idle, small work costs 10-40 % more (the
  wake-up), large work the same. Robustness on a shared machine is worth more than the best idle
  figure; set ``OMP_WAIT_POLICY=ACTIVE`` to prefer the idle figure.
* ``OMP_NUM_THREADS``: the CPUs this process may actually use (its CPU affinity and a container's CPU
  quota), where that is fewer than the machine has; torch would otherwise start one thread per CPU it
  sees and run them on fewer cores.

Only what the user has not set is set, and only where torch is not loaded yet (``import shrinknet``
before ``import torch``: the command line, the examples, scripts that do so); after torch has loaded
the variables would change nothing, so nothing is touched. Numbers do not depend on either choice
(the oracle's sums are split in fixed runs; tests compare thread counts).
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def _quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A container's CPU quota in whole CPUs (rounded up), or None where there is none."""
    try:
        if (root / "cpu.max").is_file():                                     # cgroup v2
            q, period = (root / "cpu.max").read_text().split()[:2]
            return None if q == "max" else max(1, math.ceil(int(q) / int(period)))
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())              # cgroup v1
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if q <= 0 else max(1, math.ceil(q / period))
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process can run on: its affinity mask, capped by a container's quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    q = _quota()
    return min(n, q) if q else n


def choose(environ=os.environ) -> dict:
    """Set (in ``environ``) the waiting policy and thread count the user left unset; returns what was set."""
    chosen = {}
    if "OMP_WAIT_POLICY" not in environ:
        chosen["OMP_WAIT_POLICY"] = "PASSIVE"
    n = available_cpus()
    if "OMP_NUM_THREADS" not in environ and n < (os.cpu_count() or n):
        chosen["OMP_NUM_THREADS"] = str(n)
    environ.update(chosen)
    return chosen


#: what this process's ``import shrinknet`` set (empty where torch had loaded first or the user chose)
CHOSEN = {} if "torch" in sys.modules else choose()
