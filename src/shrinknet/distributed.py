"""Sums over data split across processes, with ``torch.distributed``.

When ``torch.distributed`` is initialised (a run launched with ``torchrun``: gloo on CPUs, NCCL on
GPUs) every rank passes its own shard of the data, and every sum over samples the pruning run makes
(the error, each candidate's error, the derivatives, the statistics) is completed here across the
ranks. The ranks' partial sums are gathered and added in rank order, in float64, so every rank holds
the same numbers bit for bit and takes the same decision; they equal the one-process sums up to the
order of float additions. Without an initialised process group every function returns its input.

    torchrun --nproc-per-node 2 my_prune.py      # each process: dist.init_process_group("gloo"),
                                                 # then shrinknet.prune(model, X_shard, T_shard, ...)
"""
from __future__ import annotations

import torch


def world_size() -> int:
    """Processes taking part (1 where torch.distributed is not initialised)."""
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, in rank order in float64 (the same on every rank), in t's dtype."""
    if world_size() == 1:
        return t
    import torch.distributed as dist
    x = _on_backend(t.detach().to(torch.float64).contiguous())
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    out = parts[0].clone()
    for p in parts[1:]:
        out += p
    return out.to(dtype=t.dtype, device=t.device)


def max_(t: torch.Tensor) -> torch.Tensor:
    """The largest value of ``t`` over the ranks, elementwise (exact in any order)."""
    if world_size() == 1:
        return t
    import torch.distributed as dist
    x = _on_backend(t.detach().clone().contiguous())
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x.to(t.device)


def _on_backend(x: torch.Tensor) -> torch.Tensor:
    """NCCL moves only GPU tensors: a CPU tensor (a count, an error summed on the CPU) goes to this
    rank's GPU for the collective."""
    import torch.distributed as dist
    if x.device.type == "cpu" and dist.get_backend() == "nccl":
        return x.to(torch.device("cuda", torch.cuda.current_device()))
    return x


def all_true(flag: bool, device=None) -> bool:
    """Whether ``flag`` holds on every rank."""
    if world_size() == 1:
        return flag
    return bool(max_(torch.tensor([0.0 if flag else 1.0], device=device)) == 0)


__all__ = ["all_true", "max_", "sum_", "world_size"]
