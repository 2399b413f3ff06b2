"""Prune with several processes: each rank holds a shard of the data, every decision is taken on all of it.

    torchrun --nproc-per-node 2 examples/distributed_prune.py              # 2 processes on this machine (gloo)
    torchrun --nproc-per-node 2 examples/distributed_prune.py --check      # and compare with one process

A small CNN (two Conv2d -> BatchNorm -> ReLU blocks and a hidden Linear) with random weights, and 2,000
random 28 x 28 images with random labels, stand in for your model and data. Each rank takes every
R-th sample (its shard, as a DataLoader), and `shrinknet.prune` removes 20 units by brute force;
`shrinknet.distributed` adds the ranks' sums in rank order, so every rank takes the same decisions.
Rank 0 prints the removal order; with ``--check`` it also runs the prune alone on all the data and
says whether the orders are identical. On GPUs use the "nccl" backend and ``device=f"cuda:{local_rank}"``.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import shrinknet


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def make_data(n: int = 2000):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=20, help="units to remove (default: 20)")
    ap.add_argument("--check", action="store_true", help="rank 0 also prunes alone on all the data and compares")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)                       # one core per process
    dist.init_process_group("gloo")                # torchrun sets the rank, world size and address
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = make_data()
    shard = DataLoader(TensorDataset(X[rank::world], y[rank::world]), batch_size=250)
    result = shrinknet.prune(make_model(), shard, None, criterion="brute-force",
                             stop=shrinknet.Stop(n_neurons=a.units))
    if rank == 0:
        print(f"{world} processes, {len(X)} images: removed {result.removed}")
        print(f"error {result.initial_error:.2f} -> {result.errors[-1]:.2f} (summed over all ranks' images)")
    dist.barrier()                                 # both ranks done before either tears its connections down
    dist.destroy_process_group()                   # (while it is up, every sum is completed across the ranks)
    if a.check and rank == 0:
        alone = shrinknet.prune(make_model(), X, y, criterion="brute-force", stop=shrinknet.Stop(n_neurons=a.units))
        print("one process, all the data: identical removal order" if alone.removed == result.removed else
              f"one process, all the data: DIFFERENT order {alone.removed}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
