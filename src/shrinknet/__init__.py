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
import sys
import types

from . import _threads  # noqa: F401  (first: sets OpenMP's waiting policy before torch loads)
from ._errors import MissingDependencyError, ShrinkNetError, ShrinkNetFileNotFoundError, ShrinkNetWriteError
from ._version import __version__

# The public names load their modules (and torch) on first use, so that `import shrinknet.cli` can
# parse a command line, print its help or refuse a bad option without loading torch (PEP 562).
_LAZY = {"CompareResult": "compare", "compare": "compare", "compare_criteria": "compare",
         "PruningContext": "context", "evaluate": "context", "UnitCost": "costs", "unit_costs": "costs",
         "Criterion": "criteria", "available_criteria": "criteria", "describe_criteria": "criteria",
         "register_criterion": "criteria", "Gated": "gating", "GatedModel": "gating", "MLP": "models",
         "backend": "oracle.kernel", "Stop": "pruning", "prune": "pruning", "score": "pruning",
         "from_pretrained": "pretrained", "save_pretrained": "pretrained",
         "PruneResult": "results", "export_onnx": "saving", "load_model": "saving", "save_model": "saving",
         "ModelStats": "stats", "ShrinkReport": "stats", "compare_models": "stats", "model_stats": "stats",
         "shrink": "surgery"}


def __getattr__(name: str):
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value                   # looked up once
        return value
    try:                                           # a submodule, as `shrinknet.gating` after a bare import
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # importing the submodule shrinknet.compare binds it to the package's name "compare", which is
        # the public function (as it was when this file imported everything in order)
        if name == "compare" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["CompareResult", "Criterion", "Gated", "GatedModel", "MLP", "MissingDependencyError", "ModelStats",
           "PruneResult", "PruningContext", "ShrinkNetError", "ShrinkNetFileNotFoundError", "ShrinkNetWriteError",
           "ShrinkReport", "Stop", "UnitCost", "available_criteria", "backend", "compare", "compare_criteria",
           "compare_models", "describe_criteria", "evaluate", "export_onnx", "from_pretrained", "load_model",
           "model_stats", "prune", "register_criterion", "save_model", "save_pretrained", "score", "shrink",
           "unit_costs"]
