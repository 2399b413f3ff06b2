"""`shrinknet reproduce --quick` end to end (the whole paper, small data), and the report."""
import json

import pytest

from shrinknet import ShrinkNetError
from shrinknet.cli import main
from shrinknet.experiments import EXPERIMENTS, resolve


def test_quick_reproduction_of_every_experiment_writes_results_figures_and_report(tmp_path):
    out, report = tmp_path / "runs", tmp_path / "docs" / "REPRODUCTION.md"
    assert main(["--quiet", "reproduce", "--quick", "--out", str(out), "--report", str(report)]) == 0
    summaries = json.loads((out / "summary.json").read_text())
    assert [s["id"] for s in summaries] == list(EXPERIMENTS)
    for s in summaries:
        d = out / s["id"]
        schedules = EXPERIMENTS[s["id"]].schedules
        assert len(s["runs"]) == 4 * len(schedules)
        for sched in schedules:
            for crit in ("brute-force", "taylor1", "taylor2", "taylor2-exact"):
                r = json.loads((d / f"{crit}_{sched}.json").read_text())
                assert len(r["removed"]) == sum(EXPERIMENTS[s["id"]].hidden)  # every neuron, in order
            assert (d / f"curves_{sched}.png").is_file() and (d / f"curves_{sched}_count.png").is_file()
        assert (d / "gain_surfaces.png").is_file()
        if len(EXPERIMENTS[s["id"]].hidden) > 1:
            assert (d / "layers_brute-force.png").is_file()
    text = report.read_text()
    for e in EXPERIMENTS:
        assert f"## {e}" in text
    assert "--quick" in text and "Deviations" in text
    figs = list((tmp_path / "docs" / "reproduction").glob("*.png"))
    assert figs and sum(f.stat().st_size for f in figs) < 600_000


def test_cached_training_is_reused(tmp_path, capsys):
    args = ["--quiet", "reproduce", "cos-2x10", "--quick", "--out", str(tmp_path)]
    assert main(args) == 0 and main(args) == 0
    assert "using the net trained earlier" in capsys.readouterr().out


def test_unknown_experiment():
    with pytest.raises(ShrinkNetError, match="unknown experiment 'mnist-3x10'"):
        resolve(["mnist-3x10"])
