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
