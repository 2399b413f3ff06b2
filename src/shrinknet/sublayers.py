"""The older name of :mod:`shrinknet.units.sublayer` (whole transformer sublayers as units), kept for code
that imports it."""
from .units.sublayer import *  # noqa: F401,F403
from .units.sublayer import __all__  # noqa: F401
