"""The package's import layering, written once, as data: ``tests/test_layers.py`` holds ``src/`` to it.

:data:`LAYERS` lists the layers, lowest first; each names its modules, relative to ``shrinknet``:
``"context"`` is ``shrinknet.context``, ``"__init__"`` the package's own ``__init__.py``, and a name
ending in ``.*`` a subpackage with everything in it (``"oracle.*"``: ``oracle/__init__.py``,
``oracle/cache.py``, ...); shell-style wildcards work too (``"_*"``). The rules the test checks, on
every ``import`` and ``from ... import`` of every file (inside functions and under
``if TYPE_CHECKING:`` too):

* every module is in exactly one layer: a new module is placed by adding its name to one list;
* a module imports only from its own layer or lower ones, unless :data:`ALLOWED` names the pair;
  importing ``a.b.c`` also imports the package ``a.b``, so that counts too;
* the library (every layer but the last, :data:`APPLICATION`) never imports ``shrinknet.paper``;
* there is no import cycle, within a layer either (a package's ``__init__`` importing its own
  modules is no cycle, but one of them importing a name from that ``__init__`` is).

Nothing imports this module at run time.
"""

#: (name, modules), lowest layer first
LAYERS = [
    # errors and checks, OpenMP threads, the version, files, progress bars, memory, sums over ranks
    ("foundations", ["_errors", "_validation", "_threads", "_version", "_layers", "_io", "_progress", "_memory", "distributed"]),
    # activations and losses, the inputs models take, rank statistics, transformer structures (attention
    # styles, the sites of heads and FFN neurons), the dependency graph, max pooling as strided maxima
    ("tensors", ["activations", "losses", "inputs", "rankstats", "blocks", "attention", "causal_attention",
                 "dependency", "pooling"]),
    # the unit kinds, one module each (found, gated, cut, saved, costed), and their registry: what finding,
    # gating, surgery, saving and costs dispatch to (sublayers: the older name of units.sublayer)
    ("units", ["units.*", "sublayers"]),
    # what is computed from them: compensation, derivatives; checkpoint files
    ("derived", ["compensation", "derivatives", "checkpoint"]),
    # which units a model has (one trace), and the gated models: the oracle's MLP path reads the MLP,
    # so they sit below it
    ("models", ["finding", "gating", "models"]),
    ("oracle", ["oracle.*"]),
    # one evaluator per model kind: the oracle, derivatives and compensation for that kind
    ("evaluators", ["evaluators.*"]),
    # error and accuracy of a model (the compiled kernel's measure on the MLP)
    ("metrics", ["metrics"]),
    # one run's state: as_gated, PruningContext, evaluate
    ("context", ["context"]),
    # the criteria (their registry and the built-ins) and results
    ("criteria", ["criteria.*", "results"]),
    # what a user calls on a model: prune / score, shrink, stats, save / load, figures; Hugging Face model
    # folders (saved and reloaded; read for the command line)
    ("operations", ["pruning", "surgery", "stats", "saving", "plots", "costs", "uniform", "pretrained", "folders",
                    "budgets"]),
    # criteria compared with the oracle
    ("compare", ["compare"]),
    # the package's __init__: the public names
    ("api", ["__init__"]),
    # the paper's experiments, the command line, and data.py / train.py: aliases of shrinknet.paper.data
    # and .train kept for older code, so they are the application's too
    ("application", ["paper.*", "cli", "__main__", "data", "train"]),
]

#: the last layer: the only one that may import shrinknet.paper
APPLICATION = LAYERS[-1][0]

#: {(importer, imported): why} imports allowed against the layers, names as in LAYERS (none now)
ALLOWED: dict[tuple[str, str], str] = {}
