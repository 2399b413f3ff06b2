"""shrinknet: remove whole neurons from trained networks without retraining.

    >>> import shrinknet
    >>> model = shrinknet.MLP([400, 100, 10], seed=0)
    >>> scores = shrinknet.score(model, X, T, criterion="taylor2")
    >>> result = shrinknet.prune(model, X, T, criterion="brute-force", stop=shrinknet.Stop(fraction=0.5))
"""
from ._validation import ShrinkNetError
from .compare import CompareResult, compare
from .criteria import available_criteria, describe_criteria, register_criterion
from .metrics import evaluate
from .models import MLP
from .pruning import Stop, prune, score
from .results import PruneResult

__version__ = "0.1.0"

__all__ = ["CompareResult", "MLP", "PruneResult", "ShrinkNetError", "Stop", "available_criteria", "compare", "describe_criteria",
           "evaluate", "prune", "register_criterion", "score"]
