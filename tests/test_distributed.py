"""Two processes on torch.distributed (gloo), each with half the data, prune as one process with all of it.

The ranks' sums are gathered and added in rank order in float64, so both ranks hold the same numbers
and take the same decisions; against one process with all the data the sums differ only in the
order of float additions (float64 data here, so decisions are identical).
"""
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import shrinknet
from tests.conftest import image_data, tiny_cnn

STOP = 6


def data():
    X, y = image_data(n=24)
    return X, y


def mlp_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)


def runs(X, y, Xm, ym):
    """What each process computes on its data: a generic model and the MLP fast path, prune / score /
    compare / evaluate, with a loader for the generic model."""
    from torch.utils.data import DataLoader, TensorDataset
    net = tiny_cnn()
    mlp = shrinknet.MLP([5, 6, 4, 3], "tanh", "softmax", seed=0, dtype=torch.float64)
    out = {}
    for crit in ("brute-force", "taylor2", "fisher", "mean-activation"):
        r = shrinknet.prune(net, X, y, criterion=crit, stop=shrinknet.Stop(n_neurons=STOP))
        out[f"cnn {crit}"] = [r.removed, r.errors, r.accuracies]
        r = shrinknet.prune(mlp, Xm, ym, criterion=crit, stop=shrinknet.Stop(n_neurons=STOP))
        out[f"mlp {crit}"] = [r.removed, r.errors, r.accuracies]
    r = shrinknet.prune(net, DataLoader(TensorDataset(X, y), batch_size=5), None, criterion="brute-force",
                        stop=shrinknet.Stop(n_neurons=STOP))
    out["cnn loader"] = [r.removed, r.errors, r.accuracies]
    r = shrinknet.prune(mlp, Xm, ym, criterion="brute-force", compensation="lstsq", stop=shrinknet.Stop(n_neurons=STOP))
    out["mlp lstsq"] = [r.removed, r.errors, r.accuracies]
    r = shrinknet.prune(net, X, y, criterion="taylor1", stop=shrinknet.Stop(n_neurons=STOP), test=(X, y))
    out["cnn test set"] = [r.removed, r.test_errors, r.test_accuracies]
    out["score"] = [s.tolist() for s in shrinknet.score(net, X, y, "taylor1")]
    cmp = shrinknet.compare(mlp, Xm, ym, ["taylor1", "taylor2"], steps=3, own_paths=False)
    out["compare"] = [[r["criterion"], r["spearman"], r["agrees"], r["regret"]] for r in cmp.rows]
    e = shrinknet.evaluate(net, X, y)
    out["evaluate"] = [e["error"], e["accuracy"], e["n"]]
    # seeded draws per rank: the same scores on every rank (not those of one process, which draws otherwise)
    out["sampled"] = [s.tolist() for s in shrinknet.score(net, X, y, "taylor2-sampled")]
    return out


def _worker(rank, world, rendezvous, result_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        (X, y), (Xm, ym) = data(), mlp_data()
        shard = slice(rank, None, world)                 # interleaved shards of unequal content
        out = runs(X[shard], y[shard], Xm[shard], ym[shard])
        with open(f"{result_file}.{rank}", "w") as f:
            json.dump(out, f)
        dist.barrier()              # both ranks done before either tears its connections down
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_decide_as_one_process_with_all_the_data(tmp_path, one_thread):
    mp.spawn(_worker, args=(2, str(tmp_path / "rdv"), str(tmp_path / "out")), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]                          # the same numbers bit for bit on both ranks
    (X, y), (Xm, ym) = data(), mlp_data()
    one = json.loads(json.dumps(runs(X, y, Xm, ym)))
    for key, want in one.items():
        got = ranks[0][key]
        if key == "sampled":
            continue
        if key in ("score", "compare", "evaluate"):
            flat = lambda v: [x for row in v for x in (row if isinstance(row, list) else [row])]  # noqa: E731
            for a, b in zip(flat(got), flat(want)):
                assert a == b if isinstance(a, str) else a == pytest.approx(b, rel=1e-9, abs=1e-12), key
            continue
        removed, errors, accuracies = got
        assert removed == want[0], key                   # identical removal order
        assert errors == pytest.approx(want[1], rel=1e-9), key
        assert accuracies == pytest.approx(want[2], rel=1e-12), key
