"""How much memory a run may still take, so that a request that cannot fit is refused before the work
rather than killed by the operating system part-way (see docs/PERFORMANCE.md, "Memory")."""
from __future__ import annotations

from pathlib import Path

import torch

from ._validation import ShrinkNetError


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo(root: Path) -> int | None:
    try:
        for line in (root / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available(device=None, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process may still allocate on ``device`` (the CPU by default): the GPU's free memory, or
    the least of the machine's available memory and the room left under a cgroup (v2 or v1) limit;
    None where it cannot be told."""
    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device is not None and torch.device(device).type != "cpu":
        return None
    known = [v for v in [_meminfo(proc)] if v is not None]
    for limit, used in (("memory.max", "memory.current"),                                    # cgroup v2
                        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):   # v1
        lim, cur = _read_int(cgroup / limit), _read_int(cgroup / used)
        if lim is not None and cur is not None and lim < 1 << 60:       # v1 says "no limit" with a huge number
            known.append(max(0, lim - cur))
            break
    return min(known) if known else None


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def check_fits(need: int, what: str, hint: str, device=None) -> None:
    """Refuse ``what`` (the argument and the work, e.g. "X: pruning this MLP on 100,000 samples") when it
    needs more than the memory left; ``hint`` says what to do instead."""
    free = available(device)
    if free is not None and need > free:
        raise ShrinkNetError(f"{what} keeps about {gib(need)} in memory, but about {gib(free)} is free here; "
                             f"expected a run that fits ({hint})")
