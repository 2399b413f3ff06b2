"""Kept for code written before the paper's application moved: see :mod:`shrinknet.paper.train`."""
from .paper.train import *  # noqa: F401,F403
from .paper.train import TrainConfig, train  # noqa: F401
