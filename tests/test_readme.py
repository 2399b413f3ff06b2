"""The README's command-line walk-through, run line by line as written, in one fresh folder."""
import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("mlxtend")

README = Path(__file__).parents[1] / "README.md"


def walkthrough() -> list[list[str]]:
    text = README.read_text()
    block = re.search(r"<!-- cli -->\s*```\n(.*?)```\s*<!-- /cli -->", text, re.S)
    assert block, "README.md: no <!-- cli --> block"
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [words for words in lines if words]


def test_the_walkthrough_block_is_commands_of_this_cli():
    cmds = walkthrough()
    assert cmds[0] == [".", ".venv/bin/activate"]                         # the only line that is not ours
    assert all(c[0] == "shrinknet" for c in cmds[1:]) and len(cmds) >= 8
    assert {c[1] for c in cmds[1:]} >= {"train", "prune", "shrink", "compare", "reproduce", "demo"}


def test_readme_command_line_section_runs_in_order(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from shrinknet import cli
    monkeypatch.chdir(tmp_path)
    for words in walkthrough()[1:]:
        assert cli.main(words[1:]) == 0, (words, capsys.readouterr())
    out = capsys.readouterr().out
    # what each line promises is there, and reads back
    assert "saved model.safetensors" in out and "removed 50 of 100 units" in out
    for f in ["model.safetensors", "pruned/result.json", "pruned/steps.csv", "pruned/curves.png",
              "pruned/pruned.safetensors", "small/small.safetensors", "small/report.json", "cmp/compare.png",
              "cmp/summary.csv", "repro/cos-2x10", "demo/curves.png", "demo/summary.md"]:
        assert (tmp_path / f).exists(), f
    import shrinknet
    small = shrinknet.load_model("small/small.safetensors")          # 400-50-10: half the hidden neurons
    assert sum(p.numel() for p in small.parameters()) == 400 * 50 + 50 + 50 * 10 + 10
    for png in ["pruned/curves.png", "cmp/compare.png", "demo/curves.png", "demo/gain_surfaces.png"]:
        with Image.open(tmp_path / png) as im:
            assert im.width >= 1000 and im.mode == "RGB", (png, im.size, im.mode)


def test_the_api_example_reads_the_final_values_safely():
    # res.errors[-1] raised IndexError where nothing was removed; final_error falls back to the start value
    import torch

    import shrinknet
    text = README.read_text()
    assert "errors[-1]" not in text and "res.final_error, res.final_accuracy" in text
    m = shrinknet.MLP([4, 3, 2], seed=0)
    X, y = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), torch.arange(12) % 2
    res = shrinknet.prune(m, X, y, "taylor1", stop=shrinknet.Stop(n_neurons=0))
    assert res.n_removed == 0 and res.errors == []
    assert (res.final_error, res.final_accuracy) == (res.initial_error, res.initial_accuracy)
    res = shrinknet.prune(m, X, y, "taylor1", stop=shrinknet.Stop(n_neurons=2))
    assert (res.final_error, res.final_accuracy) == (res.errors[-1], res.accuracies[-1])


def test_the_torch_requirement_is_pyprojects():
    import tomllib
    deps = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    found = re.findall(r"accepts `(torch[^`]*)`", README.read_text())     # (torch==2.13.0 is the command's pin)
    assert found == [torch_req], found


def test_the_oracle_speed_up_quoted_is_the_latest_measured_table():
    # the front page quotes the latest measured table of docs/PERFORMANCE.md, with its date and machine
    perf = (README.parent / "docs" / "PERFORMANCE.md").read_text()
    section = perf[perf.index("## This build (redesign), measured back to back"):]
    date = re.search(r"Measured (\d{4}-\d\d-\d\d)", section).group(1)
    rows = [r for r in section.splitlines() if r.startswith("| this build")]
    first = [float(re.findall(r"\| ([\d.]+)x \|", r)[0]) for r in rows]
    second = [float(re.findall(r"\| ([\d.]+)x \|", r)[1]) for r in rows]
    text = " ".join(README.read_text().split())
    quoted = (f"{round(min(first))}-{round(max(first))}x quicker than the literal definition on 400-100-10 and "
              f"{round(min(second))}-{round(max(second))}x on 400-50-50-10")
    assert quoted in text, quoted
    assert f"measured {date} on 2 vCPUs of an Intel Xeon with AVX-512" in text
