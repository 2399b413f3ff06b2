"""How many threads, how they wait, which MKL code path: chosen before torch loads, for a machine
others share too and for numbers that do not depend on the machine.

torch's OpenMP threads spin-wait for each other between parallel regions. On a machine where another
process holds a core, a spinning thread burns the time slice its partner needs, and small operations
(an MLP's batch of 50, one pruning step) slow down 2-5x (``benchmarks/load.py``; figures in
docs/PERFORMANCE.md). Three choices, made here because OpenMP and MKL read them once, when torch is loaded:

* ``OMP_WAIT_POLICY=PASSIVE``: a thread with nothing to do sleeps instead of spinning. Beside a busy
  process the same work takes 1.1-1.7x its idle time instead of 1.8-4.6x; idle, small work costs up to
  25 % more (the wake-up), often nothing. Robustness on a shared machine is worth more than the best idle
  figure; set ``OMP_WAIT_POLICY=ACTIVE`` to prefer the idle figure.
* ``OMP_NUM_THREADS``: the CPUs this process may actually use (its CPU affinity and a container's CPU
  quota), where that is fewer than the machine has; torch would otherwise start one thread per CPU it
  sees and run them on fewer cores.
* ``MKL_CBWR=AVX2,STRICT``: MKL (torch's matrix products on x86) picks its code path from the CPU, and
  splits a product among its threads, so the same training gives different float rounding on an
  AVX-512 CPU and an AVX2 one, and with 1 thread and 2, and a trained net (a verdict, a README figure)
  differs between machines. Pinned to the AVX2 path (where the CPU has it; Intel's "conditional
  numerical reproducibility") in its strict mode, the products round alike whatever the thread count
  (tested) and should round alike on any x86-64 CPU with AVX2 (checked here only as two paths on one
  CPU); large float32 products on an AVX-512 CPU run up to 2x slower, small ones alike. Strict mode
  covers MKL's matrix products (?gemm, ?symm, ?trsm), on its AVX2 and AVX-512 paths only: CPUs
  without AVX2 are left to MKL's own choice. ``MKL_CBWR=AUTO`` restores it everywhere.

Only what the user has not set is set, and only where torch is not loaded yet (``import shrinknet``
before ``import torch``: the command line, the examples, scripts that do so); after torch has loaded
the variables would change nothing, so nothing is touched. Numbers do not depend on the first two
(the oracle's sums are split in fixed runs, MKL's products are strict; tests compare thread counts).
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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """This CPU's feature flags, from /proc/cpuinfo (empty where it cannot be read). Also what the
    oracle's kernel loader reads to pick its build."""
    try:
        with open(cpuinfo) as f:
            return set(next((line.split() for line in f if line.startswith("flags")), []))
    except OSError:
        return set()


def _has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    return {"avx2", "fma"} <= cpu_flags(cpuinfo)


def choose(environ=os.environ) -> dict:
    """Set (in ``environ``) the waiting policy, thread count and MKL code path the user left unset;
    returns what was set."""
    chosen = {}
    if "OMP_WAIT_POLICY" not in environ:
        chosen["OMP_WAIT_POLICY"] = "PASSIVE"
    if "MKL_CBWR" not in environ and _has_avx2():
        chosen["MKL_CBWR"] = "AVX2,STRICT"
    n = available_cpus()
    if "OMP_NUM_THREADS" not in environ and n < (os.cpu_count() or n):
        chosen["OMP_NUM_THREADS"] = str(n)
    environ.update(chosen)
    return chosen


#: what this process's ``import shrinknet`` set (empty where torch had loaded first or the user chose)
CHOSEN = {} if "torch" in sys.modules else choose()
