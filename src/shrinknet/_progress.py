"""Progress bars: one policy for every long call and command.

``progress`` (an argument of ``prune``, ``score``, ``compare``, ``train``, the demo, ``reproduce``, ...):

* ``None`` (the default): a bar appears once the work has run for :data:`DELAY` seconds, so quick calls
  print nothing and long ones are never silent;
* ``True``: from the start;  ``False``: never (``--quiet`` on the command line).

Bars go to standard error. On a terminal they redraw in place; where standard error is a file or a
pipe (a log, a CI job) they write a line at most every :data:`LOG_INTERVAL` seconds and leave the last
one standing, so a log shows where a long run is without filling up.
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ._validation import ShrinkNetError

#: whether tqdm.auto chose its notebook widget (Jupyter), which draws in place whatever stderr is
_NOTEBOOK = any(c.__module__.startswith("tqdm.notebook") for c in tqdm.__mro__)
#: seconds before a bar with ``progress=None`` appears
DELAY = 2.0
#: seconds between two lines where standard error is not a terminal
LOG_INTERVAL = 15.0


def check(progress):
    """``progress`` as True, False or None (0 and 1 are taken as False and True); anything else refused."""
    if progress is None or isinstance(progress, bool):
        return progress
    if isinstance(progress, int) and progress in (0, 1):
        return bool(progress)
    raise ShrinkNetError(f"progress: expected True, False or None (shown after {DELAY:g} s), got {progress!r}")


class _Lines:
    """Standard error where it is not a terminal: each redraw of a bar on a line of its own, instead of
    carriage returns that a log shows as one growing line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").rstrip("\n")
        if s.strip():
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable=None, *, total=None, desc: str = "", progress: bool | None = None, unit: str = "it",
        initial: int = 0):
    """A tqdm bar under the policy above (usable as an iterator wrapper or with ``update``)."""
    progress = check(progress)
    # a terminal, or a notebook (whose widget tqdm.auto draws in place): redraw; a file or a pipe: lines
    tty = sys.stderr.isatty() or _NOTEBOOK
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr if tty else _Lines(sys.stderr),
                disable=progress is False,
                delay=0 if progress else DELAY, mininterval=0.1 if tty else LOG_INTERVAL,
                leave=not tty, dynamic_ncols=tty)
