"""The core (``pip install shrinknet``, no extras) loads none of the paper's packages.

Each check runs in a fresh interpreter, so what other tests imported does not count; the paper's
packages are also made unimportable there, so a guarded import that silently falls back is caught
as well as one that succeeds.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


HEAVY = ("matplotlib", "pandas", "scipy", "sklearn", "mlxtend")

PRELUDE = f"""
import json, sys

HEAVY = {HEAVY!r}


import importlib.machinery


class _Hide(importlib.machinery.PathFinder):
    # the paper's packages are not found, as where the paper extra is not installed
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
import numpy as np
import torch

import shrinknet

steps = {{"import shrinknet": sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))}}


def loaded(step):
    steps[step] = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
"""

SRC = Path(__file__).parents[1] / "src"


def _run(body: str, tmp_path) -> dict:
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(steps))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_core_calls_load_no_paper_package(tmp_path):
    steps = _run("""
        g = torch.Generator().manual_seed(0)
        X, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
        mlp = shrinknet.MLP([4, 6, 5, 3], "sigmoid", "softmax", seed=0)
        shrinknet.score(mlp, X, y, "taylor2", loss="cross-entropy")
        loaded("score")
        r = shrinknet.prune(mlp, X, y, "brute-force", loss="cross-entropy", stop=shrinknet.Stop(fraction=0.5))
        r.save_json("r.json"); r.save_csv("r.csv"); shrinknet.PruneResult.load_json("r.json")
        loaded("prune MLP")
        shrinknet.evaluate(mlp, X, y, "cross-entropy")
        loaded("evaluate")
        mlp.save("mlp.safetensors"); shrinknet.load_model("mlp.safetensors")
        loaded("save/load MLP")

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 6),
                                  torch.nn.ReLU(), torch.nn.Linear(6, 3)).eval()
        Xi = torch.randn(20, 1, 8, 8, generator=g)
        yi = torch.randint(0, 3, (20,), generator=g)
        r = shrinknet.prune(net, Xi, yi, "taylor1", loss="cross-entropy", stop=shrinknet.Stop(fraction=0.4))
        loaded("prune CNN")
        small = shrinknet.shrink(net, r, Xi[:1])
        loaded("shrink")
        shrinknet.model_stats(small, Xi[:1])
        shrinknet.compare_models(net, small, Xi[:1], data=(Xi, yi), kept=r)
        loaded("model_stats")
        shrinknet.load_model(shrinknet.save_model(small, "small.safetensors", example_input=Xi[:1]))
        loaded("save/load CNN")
    """, tmp_path)
    assert all(v == [] for v in steps.values()), steps
    assert len(steps) == 9


def test_compare_loads_no_paper_package(tmp_path):
    steps = _run("""
        g = torch.Generator().manual_seed(0)
        X, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
        mlp = shrinknet.MLP([4, 6, 5, 3], "sigmoid", "softmax", seed=0)
        res = shrinknet.compare(mlp, X, y, ["taylor1", "l1-out"], loss="cross-entropy", steps=3)
        res.summary_rows()
        loaded("compare")
    """, tmp_path)
    assert all(v == [] for v in steps.values()), steps


def test_compare_saves_its_csv_files_without_the_paper_extra(tmp_path):
    steps = _run("""
        g = torch.Generator().manual_seed(0)
        X, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
        mlp = shrinknet.MLP([4, 6, 5, 3], "sigmoid", "softmax", seed=0)
        res = shrinknet.compare(mlp, X, y, ["taylor1"], loss="cross-entropy", steps=2)
        files = sorted(p.name for p in res.save("c"))
        assert files == ["compare.csv", "paths.csv", "summary.csv"], files
        loaded("compare.save")
    """, tmp_path)
    assert all(v == [] for v in steps.values()), steps


def test_rank_statistics_need_no_scipy(tmp_path):
    steps = _run("""
        from shrinknet.rankstats import kendall, spearman
        assert abs(kendall([1, 2, 3, 4], [1, 3, 2, 4]) - 2 / 3) < 1e-12
        assert abs(spearman([1, 2, 3, 4], [1, 3, 2, 4]) - 0.8) < 1e-12
        loaded("rankstats")
    """, tmp_path)
    assert all(v == [] for v in steps.values()), steps
