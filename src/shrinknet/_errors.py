"""shrinknet's error classes and the path check (no torch here: the command line reports them before torch
loads)."""
import os
from pathlib import Path


class ShrinkNetError(ValueError):
    """Bad input given to shrinknet (wrong shape, NaN, unknown name, ...)."""


class ShrinkNetFileNotFoundError(ShrinkNetError, FileNotFoundError):
    """A file or folder shrinknet was asked to read does not exist.

    Both a :class:`ShrinkNetError` (so ``except ShrinkNetError`` and the command line's one-line
    message keep working) and the standard :class:`FileNotFoundError`.
    """


class ShrinkNetWriteError(ShrinkNetError, OSError):
    """A file shrinknet was asked to write cannot be written there (the path is a folder, or its
    place is read-only); nothing was written.

    Both a :class:`ShrinkNetError` and the standard :class:`OSError`.
    """


class MissingDependencyError(ShrinkNetError, ImportError):
    """An optional package a call needs is not installed; the message says which extra to install.

    Both a :class:`ShrinkNetError` and the standard :class:`ImportError`.
    """


def check_path(path, name: str = "path") -> Path:
    """``path`` as a :class:`pathlib.Path`: a non-empty str or os.PathLike."""
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise ShrinkNetError(f"{name}: expected a file path (a str or pathlib.Path), got {path!r}"[:200])
    return Path(path)
