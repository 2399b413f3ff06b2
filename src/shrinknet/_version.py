"""shrinknet's version, from the package metadata: pyproject.toml is its one source.

A source tree that is not installed (``PYTHONPATH=src``) has no metadata; it reads the version from
the pyproject.toml beside ``src/``, and where there is none either says ``0+unknown``.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path

#: the version of a copy that is neither installed nor inside its source tree
UNKNOWN = "0+unknown"


@lru_cache(maxsize=None)
def version() -> str:
    """The installed distribution's version, else the source tree's (see the module's text)."""
    try:
        return metadata.version("shrinknet")
    except metadata.PackageNotFoundError:
        return from_pyproject(Path(__file__).resolve().parents[2] / "pyproject.toml")


def from_pyproject(path) -> str:
    """``[project] version`` of the pyproject.toml at `path` if it is shrinknet's, else :data:`UNKNOWN`."""
    import tomllib                          # only an uninstalled source tree reads it

    try:
        with open(path, "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return UNKNOWN
    if project.get("name") != "shrinknet" or not isinstance(project.get("version"), str):
        return UNKNOWN
    return project["version"]


__version__ = version()
