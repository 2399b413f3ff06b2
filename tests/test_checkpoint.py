"""Resumable runs: prune(checkpoint=...), the commands that keep their steps in --out, a killed process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import MLP, ShrinkNetError
from shrinknet.checkpoint import Checkpoint, digest
from shrinknet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _data(n=120, d=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    T = nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).float()
    return X, T


def _same(a, b):
    """Two results of one prune, compared as a user reads them."""
    assert a.removed == b.removed
    assert a.errors == b.errors and a.predicted == b.predicted
    assert a.accuracies == b.accuracies and a.test_errors == b.test_errors and a.test_accuracies == b.test_accuracies
    assert a.stop_reason == b.stop_reason and a.initial_error == b.initial_error
    assert all(np.array_equal(x, y) for x, y in zip(a.gates, b.gates))


class Interrupt:
    """Make Checkpoint.append raise KeyboardInterrupt at its k-th call (after writing k-1 lines)."""

    def __init__(self, monkeypatch, k):
        self.calls, self.k = 0, k
        real = Checkpoint.append

        def append(ck, record):
            self.calls += 1
            if self.calls == self.k:
                raise KeyboardInterrupt
            real(ck, record)
        monkeypatch.setattr(Checkpoint, "append", append)


def _cut(folder, keep: int, torn: bool = True):
    """Keep the first `keep` lines of a checkpoint's steps, and half of the next (a kill mid-write)."""
    p = Path(folder) / "steps.jsonl"
    lines = p.read_text().splitlines(True)
    p.write_text("".join(lines[:keep]) + (lines[keep][: len(lines[keep]) // 2] if torn else ""))


@pytest.mark.parametrize("hidden, criterion, schedule, compensation, dtype", [
    ([10, 7], "brute-force", "iterative", "none", None),              # the kept sums of the oracle's stepper
    ([10, 7], "brute-force", "iterative", "lstsq", torch.float64),
    ([12], "taylor2", "single", "none", None),                       # single: the one ranking comes first
    ([10, 7], "taylor1", "iterative", "mean", None),
    ([9], "taylor2-exact", "iterative", "none", torch.float64),
])
def test_a_cut_checkpoint_resumes_to_the_uninterrupted_result(tmp_path, hidden, criterion, schedule, compensation,
                                                               dtype):
    X, T = _data()
    m = MLP([8, *hidden, 3], "sigmoid", "sigmoid", seed=1)
    kw = dict(compensation=compensation, test=(X[:40], T[:40]), dtype=dtype, progress=False)
    ref = shrinknet.prune(m, X, T, criterion, schedule, **kw)
    assert ref.resumed_steps == 0
    shrinknet.prune(m, X, T, criterion, schedule, **kw, checkpoint=tmp_path)
    _cut(tmp_path, 5)
    r = shrinknet.prune(m, X, T, criterion, schedule, **kw, checkpoint=tmp_path)
    assert r.resumed_steps == 5
    _same(r, ref)
    if compensation != "none":                                      # the refit weights too
        for a, b in zip(r.model.state_dict().values(), ref.model.state_dict().values()):
            assert torch.equal(a, b)
    again = shrinknet.prune(m, X, T, criterion, schedule, **kw, checkpoint=tmp_path)    # a finished run
    assert again.resumed_steps == ref.n_removed
    _same(again, ref)


def test_any_model_and_a_loader_resume(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU(),
                        nn.Linear(6, 3)).eval()
    X = torch.randn(48, 1, 6, 6)
    y = torch.randint(0, 3, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    for data in ((X, y), (loader, None)):
        ref = shrinknet.prune(net, *data, "taylor2", stop=8, progress=False)
        where = tmp_path / ("tensors" if data[1] is not None else "loader")
        shrinknet.prune(net, *data, "taylor2", stop=8, progress=False, checkpoint=where)
        _cut(where, 3, torn=False)
        r = shrinknet.prune(net, *data, "taylor2", stop=8, progress=False, checkpoint=where)
        assert r.resumed_steps == 3
        _same(r, ref)


def test_a_changed_run_is_refused_naming_what_changed(tmp_path):
    X, T = _data()
    m = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=1)
    shrinknet.prune(m, X, T, "taylor2", stop=4, progress=False, checkpoint=tmp_path)
    other = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=2)
    X2 = X.clone()
    X2[0, 0] += 1e-3
    for call, what in [(lambda: shrinknet.prune(m, X, T, "taylor1", stop=4, checkpoint=tmp_path), "criterion"),
                       (lambda: shrinknet.prune(other, X, T, "taylor2", stop=4, checkpoint=tmp_path), "model"),
                       (lambda: shrinknet.prune(m, X2, T, "taylor2", stop=4, checkpoint=tmp_path), "data"),
                       (lambda: shrinknet.prune(m, X, T, "taylor2", "single", stop=4, checkpoint=tmp_path),
                        "schedule"),
                       (lambda: shrinknet.prune(m, X, T, "taylor2", stop=4, compensation="mean", checkpoint=tmp_path),
                        "compensation"),
                       (lambda: shrinknet.prune(m, X, T, "taylor2", stop=4, test=(X, T), checkpoint=tmp_path), "test"),
                       (lambda: shrinknet.prune(m, X, T, "taylor2", stop=4, dtype=torch.float64,
                                                checkpoint=tmp_path), "dtype")]:
        with pytest.raises(ShrinkNetError, match=rf"checkpoint {tmp_path}: recorded for another run \({what} was"):
            call()
    lines = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["end"] == "neuron count reached"   # nothing was added


def test_the_stop_may_change_between_runs(tmp_path):
    X, T = _data()
    m = MLP([8, 10, 6, 3], "sigmoid", "sigmoid", seed=1)
    short = shrinknet.prune(m, X, T, "brute-force", stop=4, progress=False, checkpoint=tmp_path)
    assert short.resumed_steps == 0 and short.n_removed == 4
    longer = shrinknet.prune(m, X, T, "brute-force", stop=11, progress=False, checkpoint=tmp_path)
    assert longer.resumed_steps == 4
    _same(longer, shrinknet.prune(m, X, T, "brute-force", stop=11, progress=False))
    fewer = shrinknet.prune(m, X, T, "brute-force", stop=2, progress=False, checkpoint=tmp_path)
    assert fewer.resumed_steps == 2
    _same(fewer, shrinknet.prune(m, X, T, "brute-force", stop=2, progress=False))
    # an error limit stops the replay where a fresh run with it would stop
    limit = {"max_error_increase": 0.02}
    capped = shrinknet.prune(m, X, T, "brute-force", stop=limit, progress=False, checkpoint=tmp_path)
    fresh = shrinknet.prune(m, X, T, "brute-force", stop=limit, progress=False)
    assert fresh.stop_reason.startswith("error would rise")
    _same(capped, fresh)


def test_a_checkpoint_folder_must_be_one(tmp_path):
    X, T = _data()
    m = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=1)
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ShrinkNetError, match="checkpoint: expected a folder, got the existing file"):
        shrinknet.prune(m, X, T, "taylor2", checkpoint=f)
    with pytest.raises(ShrinkNetError, match="checkpoint: expected a folder path"):
        shrinknet.prune(m, X, T, "taylor2", checkpoint=3)
    (tmp_path / "orphan").mkdir()
    (tmp_path / "orphan" / "steps.jsonl").write_text("{}\n")
    with pytest.raises(ShrinkNetError, match="steps.jsonl has no fingerprint.json beside it"):
        shrinknet.prune(m, X, T, "taylor2", checkpoint=tmp_path / "orphan")
    shrinknet.prune(m, X, T, "taylor2", stop=3, progress=False, checkpoint=tmp_path / "ok")
    with open(tmp_path / "ok" / "steps.jsonl", "a") as fh:
        fh.write("not json\n")
    with pytest.raises(ShrinkNetError, match="line 5 of steps.jsonl is not a step"):
        shrinknet.prune(m, X, T, "taylor2", stop=3, progress=False, checkpoint=tmp_path / "ok")
    bad = tmp_path / "bad"
    shrinknet.prune(m, X, T, "taylor2", stop=3, progress=False, checkpoint=bad)
    (bad / "steps.jsonl").write_text(json.dumps({"layer": 0, "unit": 99, "error": 1.0}) + "\n")
    with pytest.raises(ShrinkNetError, match=r"step 1 removes unit \(0, 99\), which this model does not have active"):
        shrinknet.prune(m, X, T, "taylor2", stop=3, progress=False, checkpoint=bad)


def test_digest_sees_every_byte():
    a = torch.arange(6.0)
    b = a.clone()
    b[3] = float(np.nextafter(np.float32(3), np.float32(4)))
    assert digest([a]) != digest([b]) and digest([a]) == digest([a.clone()])
    assert digest([a]) != digest([a.double()]) and digest([a]) != digest([a.reshape(2, 3)])
    assert digest([torch.ones(2, dtype=torch.bfloat16)]) != digest([torch.zeros(2, dtype=torch.bfloat16)])


def test_compare_resumes_its_oracle_path_and_every_own_path(tmp_path, monkeypatch):
    X, T = _data()
    m = MLP([8, 9, 5, 3], "sigmoid", "sigmoid", seed=1)
    kw = dict(criteria=["taylor1", "taylor2"], steps=7, test=(X[:40], T[:40]), progress=False)
    ref = shrinknet.compare(m, X, T, **kw)
    stop = Interrupt(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        shrinknet.compare(m, X, T, **kw, checkpoint=tmp_path)
    monkeypatch.undo()
    r = shrinknet.compare(m, X, T, **kw, checkpoint=tmp_path)
    assert stop.calls == 4
    assert json.dumps(r.rows) == json.dumps(ref.rows)
    for name in ref.paths:
        _same(r.paths[name], ref.paths[name])


# ---- the command line ----------------------------------------------------------------------------
@pytest.fixture
def model_file(tmp_path):
    from shrinknet.paper.data import load
    d = load("digits")
    m = MLP([d.n_inputs, 12, 8, d.n_outputs], "sigmoid", "sigmoid", seed=0)
    return str(m.save(tmp_path / "m.safetensors"))


def test_an_interrupted_prune_command_says_how_to_resume_and_does(tmp_path, model_file, monkeypatch, capsys):
    args = ["--quiet", "prune", model_file, "--data", "digits", "--criterion", "brute-force", "--fraction", "0.6"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert sorted(p.name for p in (tmp_path / "whole").iterdir()) == ["curves.png", "pruned.safetensors",
                                                                        "result.json", "steps.csv"]
    out = tmp_path / "cut"
    Interrupt(monkeypatch, 6)
    assert main([*args, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"kept in {out}/.partial: run the same command again to resume" in err
    assert "Run the same command again" in (out / "INCOMPLETE.txt").read_text()
    monkeypatch.undo()
    assert main([*args, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "pruned.safetensors", "result.json", "steps.csv"]
    whole, cut = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("whole", "cut"))
    assert cut.pop("resumed_steps") == 5 and whole.pop("resumed_steps") == 0
    whole.pop("seconds"), cut.pop("seconds")
    assert cut == whole
    assert (out / "steps.csv").read_text() == (tmp_path / "whole" / "steps.csv").read_text()
    # a changed option with the kept steps of another run: refused, and the steps stay for the right one
    Interrupt(monkeypatch, 3)
    assert main([*args, "--out", str(out)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args[:-1], "0.5", "--criterion", "taylor1", "--out", str(out)]) == 2
    assert "recorded for another run (criterion was 'brute-force', now 'taylor1')" in capsys.readouterr().err
    assert (out / ".partial" / "prune" / "steps.jsonl").is_file() and (out / "INCOMPLETE.txt").is_file()


def test_a_refused_command_leaves_no_trace(tmp_path, model_file, capsys):
    out = tmp_path / "new"
    assert main(["--quiet", "prune", model_file, "--data", "digits", "--criterion", "nope", "--out", str(out)]) == 2
    assert "unknown criterion" in capsys.readouterr().err.lower()
    assert not out.exists()


def test_compare_and_demo_commands_resume(tmp_path, model_file, monkeypatch, capsys):
    args = ["--quiet", "compare", model_file, "--data", "digits", "--criteria", "taylor1", "random", "--steps", "5"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    Interrupt(monkeypatch, 7)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    assert main([*args, "--out", str(tmp_path / "cut")]) == 0
    for f in ("compare.csv", "paths.csv", "summary.csv"):
        assert (tmp_path / "cut" / f).read_text() == (tmp_path / "whole" / f).read_text()
    assert not (tmp_path / "cut" / ".partial").exists() and not (tmp_path / "cut" / "INCOMPLETE.txt").exists()
    # the demo: the marker while it runs and after an interruption; gone once it has finished
    Interrupt(monkeypatch, 30)
    assert main(["--quiet", "demo", "--quick", "--out", str(tmp_path / "demo")]) == 130
    assert (tmp_path / "demo" / "INCOMPLETE.txt").is_file()
    monkeypatch.undo()
    assert main(["--quiet", "demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    assert not (tmp_path / "demo" / "INCOMPLETE.txt").exists() and not (tmp_path / "demo" / ".partial").exists()
    resumed = json.loads((tmp_path / "demo" / "results" / "brute-force_single.json").read_text())
    assert resumed["resumed_steps"] == 29


def test_reproduce_resumes_per_experiment(tmp_path, monkeypatch, capsys):
    args = ["--quiet", "reproduce", "cos-2x10", "diamond", "--quick", "--out"]
    assert main([*args, str(tmp_path / "whole")]) == 0
    capsys.readouterr()
    Interrupt(monkeypatch, 21 * 7 + 6)     # cos-2x10 done (7 prunes of 20 steps and an end line), diamond's first at 6
    assert main([*args, str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    assert main([*args, str(tmp_path / "cut")]) == 0
    assert "cos-2x10: finished before the interruption" in capsys.readouterr().out
    for exp in ("cos-2x10", "diamond"):
        for f in sorted((tmp_path / "whole" / exp).glob("*.csv")):
            assert (tmp_path / "cut" / exp / f.name).read_text() == f.read_text(), f
    diamond = json.loads((tmp_path / "cut" / "diamond" / "brute-force_iterative.json").read_text())
    assert diamond["resumed_steps"] == 5
    assert not (tmp_path / "cut" / ".partial").exists()


_SLOW = """
import sys, time, torch, shrinknet
from shrinknet import MLP
from shrinknet.criteria import get_criterion, register_criterion
taylor2 = get_criterion("taylor2")
def slow(ctx):
    time.sleep(float(sys.argv[2]))
    return taylor2.scores(ctx)
register_criterion("slow-taylor2", slow)
g = torch.Generator().manual_seed(0)
X = torch.randn(300, 10, generator=g)
T = torch.nn.functional.one_hot(torch.randint(0, 4, (300,), generator=g), 4).float()
m = MLP([10, 30, 4], "sigmoid", "sigmoid", seed=3)
r = shrinknet.prune(m, X, T, "slow-taylor2", progress=False, checkpoint=sys.argv[1])
print(r.resumed_steps, r.removed == shrinknet.prune(m, X, T, "taylor2", progress=False).removed)
"""


def test_a_killed_process_resumes(tmp_path):
    """SIGKILL mid-run (no Python clean-up at all), then the same call again."""
    script = tmp_path / "slow.py"
    script.write_text(_SLOW)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    ck = tmp_path / "ck"
    p = subprocess.Popen([sys.executable, str(script), str(ck), "0.05"], env=env)
    steps = ck / "steps.jsonl"
    t0 = time.monotonic()
    while not (steps.exists() and steps.read_text().count("\n") >= 5) and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = steps.read_text().count("\n")
    assert 5 <= kept < 30
    out = subprocess.run([sys.executable, str(script), str(ck), "0"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    resumed, same = out.stdout.split()
    assert int(resumed) == kept and same == "True"


def test_review_findings_stay_fixed(tmp_path):
    X, T = _data()
    m = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=1)
    # a NumPy integer stop is written as JSON
    r = shrinknet.prune(m, X, T, "taylor2", stop=shrinknet.Stop(n_neurons=np.int64(3)), progress=False,
                        checkpoint=tmp_path / "np")
    assert r.n_removed == 3
    # a changed test loader is refused (its batches are in the fingerprint)
    ds = torch.utils.data.TensorDataset(X[:40], T[:40])
    loader = torch.utils.data.DataLoader(ds, batch_size=20)
    shrinknet.prune(m, X, T, "taylor2", stop=3, test=(loader, None), progress=False, checkpoint=tmp_path / "tl")
    other = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:40], T[:40].flip(1)), batch_size=20)
    with pytest.raises(ShrinkNetError, match="test was"):
        shrinknet.prune(m, X, T, "taylor2", stop=3, test=(other, None), progress=False, checkpoint=tmp_path / "tl")
    again = shrinknet.prune(m, X, T, "taylor2", stop=3, test=(loader, None), progress=False, checkpoint=tmp_path / "tl")
    assert again.resumed_steps == 3 and len(again.test_errors) == 3
    # a kill right after the fingerprint (no steps file yet) resumes as a fresh run
    (tmp_path / "tl" / "steps.jsonl").unlink()
    assert shrinknet.prune(m, X, T, "taylor2", stop=3, test=(loader, None), progress=False,
                           checkpoint=tmp_path / "tl").resumed_steps == 0
    # the fingerprint names the code that made the steps
    fp = json.loads((tmp_path / "np" / "fingerprint.json").read_text())
    assert fp["shrinknet"] == shrinknet.__version__ and fp["torch"] == torch.__version__
    fp["shrinknet"] = "0.0.1"
    (tmp_path / "np" / "fingerprint.json").write_text(json.dumps(fp))
    with pytest.raises(ShrinkNetError, match=r"shrinknet was '0.0.1'.*\(remove .* to start afresh\)"):
        shrinknet.prune(m, X, T, "taylor2", stop=3, progress=False, checkpoint=tmp_path / "np")
    # lines that are JSON but not steps
    (tmp_path / "bad").mkdir()
    shrinknet.prune(m, X, T, "taylor2", stop=1, progress=False, checkpoint=tmp_path / "bad")
    (tmp_path / "bad" / "steps.jsonl").write_bytes(b'[1, 2]\n')
    with pytest.raises(ShrinkNetError, match="line 1 of steps.jsonl is not a step"):
        shrinknet.prune(m, X, T, "taylor2", stop=1, progress=False, checkpoint=tmp_path / "bad")
    with pytest.raises(ShrinkNetError, match="checkpoint: expected a folder path"):
        shrinknet.compare(m, X, T, ["taylor1"], steps=1, checkpoint=3)


def test_an_interrupt_before_the_first_step_says_nothing_was_kept(tmp_path, model_file, monkeypatch, capsys):
    from shrinknet import context

    def stopped(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(context.PruningContext, "start", stopped)
    assert main(["--quiet", "prune", model_file, "--data", "digits", "--out", str(tmp_path / "o")]) == 130
    assert "nothing was kept: run the command again" in capsys.readouterr().err


def test_a_changed_dtype_is_named_as_such(tmp_path):
    X, T = _data()
    m = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=1)
    shrinknet.prune(m, X, T, "taylor2", stop=2, progress=False, checkpoint=tmp_path)
    with pytest.raises(ShrinkNetError, match=r"\(dtype was 'torch.float32', now 'torch.float64'\)"):
        shrinknet.prune(m, X, T, "taylor2", stop=2, dtype=torch.float64, progress=False, checkpoint=tmp_path)


def test_a_shuffling_loader_resumes(tmp_path):
    from shrinknet.checkpoint import data_digest
    from shrinknet.inputs import Stream
    X, T = _data(n=60)
    ds = torch.utils.data.TensorDataset(X, T)
    shuffled = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    plain = torch.utils.data.DataLoader(ds, batch_size=20)
    same = lambda L: Stream(L, lambda a, b, k: (a, b))          # noqa: E731
    assert data_digest(same(shuffled)) == data_digest(same(shuffled)) == data_digest(same(plain))
    other = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, T.flip(1)), batch_size=20)
    assert data_digest(same(other)) != data_digest(same(plain))
    m = MLP([8, 10, 3], "sigmoid", "sigmoid", seed=1)
    shrinknet.prune(m, X, T, "taylor2", stop=3, test=(shuffled, None), progress=False, checkpoint=tmp_path)
    r = shrinknet.prune(m, X, T, "taylor2", stop=5, test=(shuffled, None), progress=False, checkpoint=tmp_path)
    assert r.resumed_steps == 3 and r.n_removed == 5
