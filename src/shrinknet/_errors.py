"""shrinknet's error classes (no torch here: the command line reports them before torch loads)."""


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
