"""Kept for code written before the paper's application moved: see :mod:`shrinknet.paper.data`."""
from .paper.data import *  # noqa: F401,F403
from .paper.data import Dataset, load  # noqa: F401
