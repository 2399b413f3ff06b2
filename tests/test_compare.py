import numpy as np
import pytest

import shrinknet
from shrinknet.cli import main

from .conftest import random_data, random_net


def test_compare_table_along_the_oracle_path():
    m = random_net([6, 5], seed=3)
    X, T = random_data(n=50, seed=3)
    res = shrinknet.compare(m, X, T, criteria=["brute-force-literal", "taylor1", "random"])
    t = res.table
    assert {"step", "criterion", "spearman", "kendall", "agrees", "regret"} <= set(t.columns)
    assert len(t) == 11 * 3
    lit = t[t.criterion == "brute-force-literal"]
    # the literal definition is the oracle: perfect agreement, zero regret, rank correlation 1
    assert lit.agrees.all() and np.allclose(lit.regret, 0, atol=1e-12)
    assert np.allclose(lit.spearman.dropna(), 1.0) and np.allclose(lit.kendall.dropna(), 1.0)
    assert (t.regret >= -1e-12).all()
    assert list(t[t.criterion == "taylor1"].n_candidates) == list(range(11, 0, -1))
    # the oracle path is the exact serial prune
    assert res.oracle.removed == shrinknet.prune(m, X, T, "brute-force").removed
    assert set(res.paths) == {"brute-force", "brute-force-literal", "taylor1", "random"}
    s = res.summary()
    assert list(s.criterion) == ["brute-force-literal", "taylor1", "random"]


def test_regret_is_the_exact_change_of_the_choice_minus_the_best():
    m = random_net([5], seed=8)
    X, T = random_data(seed=8)
    res = shrinknet.compare(m, X, T, criteria=["taylor1"], steps=1, own_paths=False)
    row = res.table.iloc[0]
    exact = shrinknet.score(m, X, T, "brute-force")[0]
    assert row.regret == pytest.approx(exact[row.chosen_unit] - exact.min(), abs=1e-12)
    assert row.agrees == (row.chosen_unit == int(np.argmin(exact)))


def test_compare_cli_writes_csv_and_plots(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "6", "5", "--epochs", "3",
                 "--out", str(model)]) == 0
    assert main(["--quiet", "compare", str(model), "--data", "diamond", "--criteria", "taylor2", "l1-out",
                 "--steps", "4", "--out", str(tmp_path / "c")]) == 0
    for f in ("compare.csv", "summary.csv", "paths.csv", "compare.png", "paths.png"):
        assert (tmp_path / "c" / f).is_file()
    lines = (tmp_path / "c" / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("step,criterion,spearman,kendall,agrees,regret") and len(lines) == 1 + 4 * 2
    assert "taylor2" in capsys.readouterr().out


def test_compare_needs_criteria():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(shrinknet.ShrinkNetError, match="at least one criterion"):
        shrinknet.compare(m, X, T, criteria=[])


def test_compare_with_compensation_follows_the_compensated_oracle():
    m = random_net([6, 5], seed=3)
    X, T = random_data(n=50, seed=3)
    res = shrinknet.compare(m, X, T, criteria=["taylor2"], steps=4, compensation="lstsq")
    assert res.oracle.compensation == "lstsq"
    assert res.oracle.removed == shrinknet.prune(m, X, T, "brute-force", stop=4, compensation="lstsq").removed
    assert (res.table.regret >= -1e-9).all()


def test_compare_on_a_cnn():
    from tests.conftest import image_data, tiny_cnn
    X, y = image_data(n=20)
    res = shrinknet.compare(tiny_cnn(), X, y, ["taylor2", "taylor2-exact", "l1-out"], "cross-entropy", steps=4)
    t = res.table
    assert len(t) == 12 and set(t.criterion) == {"taylor2", "taylor2-exact", "l1-out"}
    # ReLU net: the Gauss-Newton taylor2 is the exact second-order estimate, so the two rank alike
    a, b = (t[t.criterion == c].spearman.to_numpy() for c in ("taylor2", "taylor2-exact"))
    assert np.allclose(a, b) and (t.regret >= -1e-9).all()
    assert res.paths["taylor2"].unit_names == ["0", "4", "9"]
