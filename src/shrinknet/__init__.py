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
from ._validation import ShrinkNetError
from .compare import CompareResult, compare
from .criteria import available_criteria, describe_criteria, register_criterion
from .gating import GatedModel
from .metrics import evaluate
from .models import MLP
from .pruning import Stop, prune, score
from .results import PruneResult
from .saving import export_onnx, load_model, save_model
from .stats import ModelStats, ShrinkReport, compare_models, model_stats
from .surgery import shrink

__version__ = "0.1.0"

__all__ = ["CompareResult", "GatedModel", "MLP", "ModelStats", "PruneResult", "ShrinkNetError", "ShrinkReport", "Stop",
           "available_criteria", "compare", "compare_models", "describe_criteria", "evaluate", "export_onnx",
           "load_model", "model_stats", "prune", "register_criterion", "save_model", "score", "shrink"]
