"""Progress bars: after 2 s by default, on standard error, one line per redraw where that is not a terminal."""
import pytest

import shrinknet
from shrinknet import _progress

from .conftest import random_data, random_net


def _prune(progress, **kw):
    m, (X, T) = random_net([6, 5]), random_data()
    return shrinknet.prune(m, X, T, "brute-force", stop=6, progress=progress, **kw)


def test_true_shows_a_bar_on_stderr_as_lines_in_a_log(capsys):
    _prune(True)
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err
    lines = err.splitlines()
    # a log gets the first and the last state (redraws at most every LOG_INTERVAL s), each on its own line
    assert 1 <= len(lines) <= 3 and all(line.startswith("brute-force (iterative)") for line in lines)
    assert "6/6" in lines[-1]


def test_false_is_silent_and_none_waits_for_the_delay(capsys, monkeypatch):
    _prune(False)
    monkeypatch.setattr(_progress, "DELAY", 3600.0)     # a call quicker than the delay prints nothing
    _prune(None)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(_progress, "DELAY", 0.0)        # a call that has run longer than the delay shows it
    _prune(None)
    assert "brute-force (iterative)" in capsys.readouterr().err


def test_score_counts_the_candidates_the_oracle_scored(capsys, monkeypatch):
    m, (X, T) = random_net([6, 5]), random_data()
    steps = []
    real = _progress.bar

    def recording(*args, **kwargs):
        b = real(*args, **kwargs)
        update = b.update
        b.update = lambda n=1: (steps.append(n), update(n))[1]
        return b
    monkeypatch.setattr(_progress, "bar", recording)
    shrinknet.score(m, X, T, "brute-force", progress=False)
    assert steps[:2] == [6, 5]                          # group by group, as the oracle scores them
    monkeypatch.setattr(_progress, "bar", real)
    shrinknet.score(m, X, T, "brute-force", progress=True)
    shrinknet.score(m, X, T, "l1-in", progress=True)            # no oracle: the bar ends full all the same
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("brute-force scores") and "11/11" in line for line in err), err
    assert any(line.startswith("l1-in scores") and "11/11" in line for line in err), err


@pytest.mark.parametrize("call", ["train", "compare"])
def test_training_and_compare_show_bars_too(call, capsys):
    m, (X, T) = random_net([6, 5]), random_data()
    if call == "train":
        from shrinknet.paper.train import TrainConfig, train
        train(m, X, T, TrainConfig(epochs=3), progress=True)
        assert "training" in capsys.readouterr().err
    else:
        shrinknet.compare(m, X, T, ["taylor1"], steps=2, own_paths=False, progress=True)
        assert "oracle path" in capsys.readouterr().err


def test_zero_and_one_are_false_and_true(capsys):
    _prune(1)
    assert "brute-force (iterative)" in capsys.readouterr().err
    _prune(0)
    assert capsys.readouterr().err == ""


def test_evaluate_over_a_loader_shows_its_batches(capsys):
    import torch
    m, (X, T) = random_net([6, 5]), random_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, T), batch_size=10)
    got = shrinknet.evaluate(m, loader, None, progress=True)
    assert got == shrinknet.evaluate(m, X, T) or abs(got["error"] - shrinknet.evaluate(m, X, T)["error"]) < 1e-9
    err = capsys.readouterr().err.splitlines()
    assert err and err[-1].startswith("evaluate") and "4/4" in err[-1]
