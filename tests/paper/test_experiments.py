"""`shrinknet reproduce --quick` end to end (the whole paper, small data), and the report."""
import json
import re

import pytest

from shrinknet import ShrinkNetError
from shrinknet.cli import main
from shrinknet.paper.experiments import EXPERIMENTS, resolve


def test_quick_reproduction_of_every_experiment_writes_results_figures_and_report(tmp_path):
    out, report = tmp_path / "runs", tmp_path / "docs" / "REPRODUCTION.md"
    assert main(["--quiet", "reproduce", "--quick", "--out", str(out), "--report", str(report)]) == 0
    summaries = json.loads((out / "summary.json").read_text())
    assert [s["id"] for s in summaries] == list(EXPERIMENTS)
    for s in summaries:
        d = out / s["id"]
        schedules = EXPERIMENTS[s["id"]].schedules
        assert len(s["runs"]) == 6 * len(schedules) + len(EXPERIMENTS[s["id"]].extra)   # the paper's 4, thresholded, extra
        for sched in schedules:
            for crit in ("brute-force", "taylor1", "taylor2", "taylor2-exact", "taylor2-mean", "taylor2-median"):
                r = json.loads((d / f"{crit}_{sched}.json").read_text())
                assert len(r["removed"]) == sum(EXPERIMENTS[s["id"]].hidden)  # every neuron, in order
            assert (d / f"curves_{sched}.png").is_file() and (d / f"curves_{sched}_test.png").is_file()
        assert (d / "gain_surfaces.png").is_file()
        if len(EXPERIMENTS[s["id"]].hidden) > 1:
            assert (d / "layers_brute-force.png").is_file()
    text = report.read_text()
    for e in EXPERIMENTS:
        assert f"## {e}" in text
    assert "--quick" in text and "Deviations" in text
    figs = list((tmp_path / "docs" / "reproduction").glob("*.png"))
    assert figs and sum(f.stat().st_size for f in figs) < 7_500_000          # a few MB for every figure, spreads too
    from PIL import Image
    for f in figs:
        with Image.open(f) as im:
            assert im.mode == "RGB" and im.width >= 1000, (f.name, im.mode, im.size)
    links = re.findall(r"\]\(([^)#]+)\)", text)                               # the report links only files
    assert links and all((report.parent / link).is_file() for link in links), [   # that sit beside it
        link for link in links if not (report.parent / link).is_file()]


def test_cached_training_is_reused(tmp_path, capsys):
    args = ["--quiet", "reproduce", "cos-2x10", "--quick", "--out", str(tmp_path)]
    assert main(args) == 0
    assert "trained 1-10-10-1" in capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "using the net trained earlier" in second and "trained 2-10" not in second


def test_unknown_experiment():
    with pytest.raises(ShrinkNetError, match="unknown experiment 'mnist-3x10'"):
        resolve(["mnist-3x10"])


def test_lenet_table_runs_on_tiny_fashion_files(tmp_path, monkeypatch):
    from shrinknet.paper import data, lenet_table
    from .test_data import _write_idx
    import numpy as np
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 40))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20))
    monkeypatch.setattr(data, "FASHION_DIR", tmp_path)
    out = lenet_table.run(tmp_path / "table.md", eval_samples=30, criteria=("l1-in", "taylor2"),
                          modes=("none", "lstsq"), cache=tmp_path / "cache", log=lambda *a: None)
    text = out.read_text()
    assert "| l1-in |" in text and "| taylor2 |" in text and "88.69" in text and "82.75" in text
    assert (tmp_path / "cache" / "lenet-300-100-fashion.safetensors").is_file()
    # without a cache folder nothing but the table is written
    again = lenet_table.run(tmp_path / "fresh" / "t.md", eval_samples=30, criteria=("l1-in",), modes=("none",),
                            log=lambda *a: None)
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == ["t.md"] and again == tmp_path / "fresh" / "t.md"


def test_a_bad_seed_count_is_one_clear_error_and_leaves_nothing(tmp_path, capsys):
    assert main(["--quiet", "reproduce", "cos-2x10", "--quick", "--seeds", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seeds: expected an integer >= 1, got 0" in err
    assert not (tmp_path / "r").exists()
