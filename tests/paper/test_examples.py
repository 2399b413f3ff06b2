"""The two examples run end to end (on tiny stand-in data instead of Fashion-MNIST)."""
import importlib.util
import sys
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


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))       # the transformer examples share prune_transformer.py


def _load(script, monkeypatch):
    spec = importlib.util.spec_from_file_location(script[:-3], EXAMPLES / script)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, script[:-3], mod)     # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_vit_example_trains_prunes_heads_and_neurons_and_shrinks(examples_on_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    import torch
    mod = _load("vit_fashion.py", monkeypatch)
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(200, 1, 28, 28, generator=g), torch.randint(0, 10, (200,), generator=g),
            torch.randn(50, 1, 28, 28, generator=g), torch.randint(0, 10, (50,), generator=g))
    monkeypatch.setattr(mod, "load_data", lambda n_train, n_test: data)
    out = mod.main(["--quick", "--cache", str(tmp_path), "--calib", "32", "--fraction", "0.05",
                    "--criterion", "l1-in"])
    assert out["result"].n_removed == round(0.05 * 528)
    assert out["report"].after.params < out["report"].before.params
    text = capsys.readouterr().out
    assert "test accuracy" in text and "spearman" in text and "FLOPs / sample" in text


def test_gpt_example_trains_prunes_and_shrinks(examples_on_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    mod = _load("gpt_chars.py", monkeypatch)
    text = "".join(("to be or not to be, that is the question. " * 3 + "\n") for _ in range(400))
    monkeypatch.setattr(mod, "load_corpus", lambda: text)
    monkeypatch.setattr(mod, "QUICK", dict(n_train=640, n_val=32, block=16, n_layer=2))
    out = mod.main(["--quick", "--cache", str(tmp_path), "--calib", "8", "--fraction", "0.02", "--criterion", "l1-in"])
    assert out["result"].n_removed > 0 and out["report"].after.params < out["report"].before.params
    assert "validation loss" in capsys.readouterr().out
