"""Atomic writes: the file appears whole, with the mode the umask gives."""
import os
import stat

import pytest

from shrinknet._io import atomic_target, write_text


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umasks_mode(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        p = write_text(tmp_path / "sub" / "a.txt", "hello")
    finally:
        os.umask(old)
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_target(p) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk full")
    assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
