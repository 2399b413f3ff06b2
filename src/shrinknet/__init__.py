"""shrinknet: remove whole neurons from trained networks without retraining.

    >>> import shrinknet
    >>> model = shrinknet.MLP([400, 100, 10], seed=0)
    >>> scores = shrinknet.score(model, X, T, criterion="taylor2")
    >>> result = shrinknet.prune(model, X, T, criterion="brute-force", stop=shrinknet.Stop(fraction=0.5))
    >>> # any nn.Module: units are Linear output features / Conv2d output channels
    >>> result = shrinknet.prune(net, X, y, "taylor2", loss="cross-entropy", units=["conv1", "fc1"],
    ...                           stop=shrinknet.Stop(fraction=0.5))
    >>> small = shrinknet.shrink(net, result)       # physically smaller, same outputs as the gated net
"""
from . import _threads  # noqa: F401  (first: sets OpenMP's waiting policy before torch loads)
from ._validation import MissingDependencyError, ShrinkNetError, ShrinkNetFileNotFoundError, ShrinkNetWriteError
from ._version import __version__
from .compare import CompareResult, compare, compare_criteria
from .context import PruningContext, evaluate
from .costs import UnitCost, unit_costs
from .criteria import Criterion, available_criteria, describe_criteria, register_criterion
from .gating import Gated, GatedModel
from .models import MLP
from .oracle.kernel import backend
from .pruning import Stop, prune, score
from .results import PruneResult
from .saving import export_onnx, load_model, save_model
from .stats import ModelStats, ShrinkReport, compare_models, model_stats
from .surgery import shrink

__all__ = ["CompareResult", "Criterion", "Gated", "GatedModel", "MLP", "MissingDependencyError", "ModelStats",
           "PruneResult", "PruningContext", "ShrinkNetError", "ShrinkNetFileNotFoundError", "ShrinkNetWriteError",
           "ShrinkReport", "Stop", "UnitCost", "available_criteria", "backend", "compare", "compare_criteria",
           "compare_models", "describe_criteria", "evaluate", "export_onnx", "load_model", "model_stats", "prune",
           "register_criterion", "save_model", "score", "shrink", "unit_costs"]
