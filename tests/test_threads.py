"""Thread choices made before torch loads (shrinknet/_threads.py), and numbers that do not depend on them."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import _threads


def test_choose_sets_passive_waiting_only_where_the_user_did_not_choose(monkeypatch):
    monkeypatch.setattr(_threads, "_has_avx2", lambda: True)
    env = {}
    chosen = _threads.choose(env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and chosen["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["MKL_CBWR"] == "AVX2,STRICT"
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3", "MKL_CBWR": "AUTO"}
    assert _threads.choose(env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3",
                                                  "MKL_CBWR": "AUTO"}


def test_the_mkl_path_is_pinned_only_on_cpus_that_have_it(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu sse2 avx avx2 fma bmi2\n")
    assert _threads._has_avx2(tmp_path / "cpuinfo")
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu sse2 avx\n")
    assert not _threads._has_avx2(tmp_path / "cpuinfo") and not _threads._has_avx2(tmp_path / "missing")
    monkeypatch.setattr(_threads, "_has_avx2", lambda: False)
    env = {}
    _threads.choose(env)
    assert "MKL_CBWR" not in env                    # strict mode needs MKL's AVX2 path: MKL's own choice


def test_thread_count_follows_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(_threads, "available_cpus", lambda: 2)
    env = {}
    _threads.choose(env)
    assert env["OMP_NUM_THREADS"] == "2"
    monkeypatch.setattr(_threads, "available_cpus", lambda: 64)      # all of them: torch's own default
    env = {}
    _threads.choose(env)
    assert "OMP_NUM_THREADS" not in env


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),                   # v2: 1.5 CPUs -> 2
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage"}, None),
    ({}, None),
])
def test_container_quota_is_read_from_cgroup_v1_and_v2(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _threads._quota(tmp_path) == expected


def _env_of_child(code):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_CBWR")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_import_before_torch_sets_the_policy_and_after_torch_touches_nothing():
    probe = "import os; print(os.environ.get('OMP_WAIT_POLICY', '-'), shrinknet._threads.CHOSEN)"
    assert _env_of_child("import shrinknet;" + probe)[0] == "PASSIVE"
    assert _env_of_child("import torch, shrinknet;" + probe) == ["-", "{}"]


def test_training_and_pruning_give_the_same_numbers_with_one_and_two_threads():
    from shrinknet.paper.train import TrainConfig, train
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 300)]
    runs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            m = shrinknet.MLP([20, 16, 3], "sigmoid", "sigmoid", seed=0)
            train(m, X, T, TrainConfig(epochs=3, lr=1e-2, batch_size=50))
            r = shrinknet.prune(m, torch.from_numpy(X), torch.from_numpy(T), "brute-force",
                                stop=shrinknet.Stop(n_neurons=8))
            runs.append((torch.cat([p.detach().flatten() for p in m.parameters()]), r.removed, r.errors))
    finally:
        torch.set_num_threads(before)
    (w1, o1, e1), (w2, o2, e2) = runs
    fresh = shrinknet.MLP([20, 16, 3], "sigmoid", "sigmoid", seed=0)
    untrained = torch.cat([p.detach().flatten() for p in fresh.parameters()])
    assert not torch.equal(w1, untrained) and len(o1) == 8
    assert torch.equal(w1, w2) and o1 == o2 and e1 == e2


def test_reproduce_writes_the_same_files_with_1_2_and_4_threads(tmp_path):
    """The command line as users run it, in fresh processes: every step file and the claims the same."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_CBWR")}
    files = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}"
        subprocess.run([sys.executable, "-m", "shrinknet", "--quiet", "reproduce", "digit-0", "mnist-2x50", "--quick",
                        "--out", str(out)], env={**env, "OMP_NUM_THREADS": str(threads),
                                                 "PYTHONPATH": str(root / "src")}, check=True, capture_output=True)
        steps = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.csv"))}
        files.append({**steps, "claims.json": (out / "claims.json").read_bytes()})
    assert len(files[0]) == 2 * 6 + 6 + 1            # mnist-2x50: 2 schedules x 6 criteria; digit-0: 1 x 6
    assert files[0] == files[1] == files[2]
