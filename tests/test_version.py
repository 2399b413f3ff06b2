"""The version has one source, pyproject.toml: read from the installed metadata, or from the
pyproject.toml of a source tree that is not installed."""
import tomllib
from importlib import metadata
from pathlib import Path

import shrinknet
from shrinknet import _version
from shrinknet.checkpoint import versions

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
WANT = tomllib.loads(PYPROJECT.read_text())["project"]["version"]


def test_the_package_checkpoints_and_the_command_say_the_same_version():
    assert shrinknet.__version__ == _version.version() == versions()["shrinknet"] == WANT


def test_an_uninstalled_source_tree_reads_its_pyproject(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_version.metadata, "version", missing)
    assert _version.version.__wrapped__() == WANT                  # this tree's src/../pyproject.toml


def test_a_pyproject_not_of_shrinknet_or_none_gives_unknown(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('[project]\nname = "other"\nversion = "9.9"\n')
    mine = tmp_path / "mine.toml"
    mine.write_text('[project]\nname = "shrinknet"\nversion = "1.2.3"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("[project\n")
    assert _version.from_pyproject(mine) == "1.2.3"
    assert [_version.from_pyproject(p) for p in (other, broken, tmp_path / "none.toml")] == ["0+unknown"] * 3
