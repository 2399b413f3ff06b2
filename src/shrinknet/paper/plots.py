"""The figures' older name: every figure lives in :mod:`shrinknet.plots`, re-exported here.

They moved there so that the library, which never imports the paper's application, can draw them
too (:meth:`shrinknet.CompareResult.save`); ``from shrinknet.paper import plots`` keeps working.
"""
from ..plots import *  # noqa: F401,F403
