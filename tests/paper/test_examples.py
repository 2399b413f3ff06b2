"""The two examples run end to end (on tiny stand-in data instead of Fashion-MNIST)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from shrinknet.paper.data import Dataset, one_hot

EXAMPLES = Path(__file__).parents[2] / "examples"


def tiny_fashion():
    g = np.random.default_rng(0)
    ytr, yte = g.integers(0, 10, 300), g.integers(0, 10, 100)
    Xtr = g.uniform(0, 1, (300, 784)).astype(np.float32)
    Xte = g.uniform(0, 1, (100, 784)).astype(np.float32)
    return Dataset("tiny", Xtr, one_hot(ytr, 10), Xte, one_hot(yte, 10), ytr, yte)


@pytest.mark.parametrize("script, args", [
    ("lenet300_fashion.py", ["--epochs", "1", "--eval-samples", "100", "--fraction", "0.3", "--criterion", "taylor2"]),
    ("cnn_bn_fashion.py", ["--epochs", "1", "--eval-samples", "60", "--fraction", "0.2", "--max-accuracy-drop", "1"]),
])
def test_example_trains_prunes_shrinks_and_reports(script, args, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(script[:-3], EXAMPLES / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "fashion_mnist", tiny_fashion)
    report = mod.main(args + ["--out", str(tmp_path)])
    assert report.after.params < report.before.params and report.after.flops < report.before.flops
    assert (tmp_path / "small.safetensors").is_file() and (tmp_path / "report.json").is_file()
    out = capsys.readouterr().out
    assert "parameters" in out and "accuracy" in out and "CPU latency" in out
