"""Atomic file writes: a failure part-way never leaves a half-written or lost file."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ._errors import ShrinkNetError, ShrinkNetWriteError, check_path


def check_target(path, name: str = "path") -> Path:
    """``path`` as a Path to write a file to, refusing up front what could never be one: not a path,
    or an existing folder."""
    path = check_path(path, name)
    if path.is_dir():
        raise ShrinkNetWriteError(f"{name}: expected a file name, got the existing folder {path}")
    return path


@contextmanager
def atomic_target(path, durable: bool = False):
    """Yield a temporary path beside `path`; on success it replaces `path`, else it is removed.
    ``durable``: the file's bytes reach the disk (fsync) before the rename, so a power loss after it
    cannot leave an empty file under the name. A path that cannot be written (a folder, a place where
    no file can be made) raises :class:`ShrinkNetWriteError` before anything is written."""
    path = check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:                  # read-only or pseudo file systems (procfs), a file as a parent, ...
        raise ShrinkNetWriteError(f"path: expected a file in a folder this user can write to, got {path} "
                                  f"({e.strerror or type(e).__name__})") from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file owner-only (0600); give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)          # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text(path, text: str, durable: bool = False) -> Path:
    """Write ``text`` to ``path`` whole or not at all (see :func:`atomic_target`)."""
    with atomic_target(path, durable) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


#: the file a long command keeps in its output folder while it runs, and leaves if it does not finish
MARKER = "INCOMPLETE.txt"


@contextmanager
def resumable(out, command: str, kind: str = "dir"):
    """Yield the folder where a long command keeps what it needs to resume (``out/.partial`` for an
    output folder, ``out.partial`` beside an output file). While the command runs, an output folder
    holds ``INCOMPLETE.txt`` saying that its files may mix this run and an earlier one; both go once
    the command succeeds. A failure keeps them (so the same command resumes), except a refusal
    (ShrinkNetError) before anything was kept, which leaves no trace."""
    out = Path(out)
    partial = out / ".partial" if kind == "dir" else out.with_name(out.name + ".partial")
    marker = out / MARKER if kind == "dir" else None
    if marker is not None:
        write_text(marker, f"'{command}' is writing this folder, or was stopped before it finished: its files may "
                           f"mix that run and an earlier one. Run the same command again: it resumes from what "
                           f"{partial.name}/ holds and removes this file when it is done. To start afresh instead "
                           f"(other options, or a refusal that comes back), remove {partial.name}/ first.\n")
    try:
        yield partial
    except Exception as e:
        if isinstance(e, ShrinkNetError) and not any(p.is_file() for p in partial.rglob("*")):
            _tidy(partial, marker)
        raise
    _tidy(partial, marker)


def _tidy(partial: Path, marker) -> None:
    """Remove what a finished (or refused) command kept for resuming."""
    import shutil
    shutil.rmtree(partial, ignore_errors=True)
    if marker is not None:
        marker.unlink(missing_ok=True)
