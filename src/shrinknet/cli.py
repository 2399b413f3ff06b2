"""Command line: ``shrinknet {demo,train,prune,shrink,compare,reproduce,...}``; ``shrinknet CMD --help`` for each.

    shrinknet demo --out shrinknet-demo
    shrinknet train --data mnist --hidden 100 --out model.safetensors
    shrinknet prune model.safetensors --data mnist --criterion brute-force --fraction 0.5 --out pruned/
    shrinknet shrink model.safetensors --data mnist --criterion taylor2 --fraction 0.5 --out small/
    shrinknet shrink gpt-folder/ --data train.txt --test-data test.txt --max-error-increase 0.05 --out small-gpt/

Parsing, --help and a refused option load neither torch nor the paper's packages: each command
imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from . import __version__
from ._errors import MissingDependencyError, ShrinkNetError
from ._io import resumable, write_text

#: optional packages and the extra that installs each (a last resort for an import the code did not guard)
_EXTRAS = {"matplotlib": "paper", "pandas": "paper", "scipy": "paper", "sklearn": "paper", "mlxtend": "paper",
           "PIL": "paper", "onnx": "onnx", "onnxscript": "onnx", "onnxruntime": "onnx", "transformers": "hf",
           "tokenizers": "hf"}


#: every command's default data set: installed with shrinknet[paper] (fashion-mnist needs a system package)
DATA = "mnist"
#: every command's default loss: "auto" = cross-entropy where the model outputs logits (an identity output
#: layer, as a model written by save_model), else sse (the paper's, for the sigmoid / softmax MLPs of 'train')
LOSS_HELP = ("error measure: sse = 1/2 sum (o - t)^2, cross-entropy, or auto (default): cross-entropy for a model "
             "with logit outputs (identity output activation), sse for sigmoid / softmax outputs (the paper's)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``shrinknet: error: ...``, exit code 2) and a description that may
    be computed only when the help is shown (``late_description``, a function)."""

    late_description = None

    def error(self, message):
        cmd = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"shrinknet: error: {cmd}{message} (see '{self.prog} --help')\n")

    def format_help(self):
        if self.late_description is not None:
            self.description = self.late_description()
        return super().format_help()


def _whole(text):
    """argparse type: a whole number, refused as "expected ..., got ..." (its range is checked where it is used)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text):
    """argparse type: a finite number, refused as "expected ..., got ..."."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _loss(a, model) -> str:
    """The --loss given, or for auto the one the model's output calls for (see LOSS_HELP)."""
    if a.loss != "auto":
        return a.loss
    return "sse" if getattr(model, "output_activation", "identity") in ("sigmoid", "softmax") else "cross-entropy"


def _add_train(sub):
    p = sub.add_parser("train", help="train an MLP on a bundled data set and save it (.safetensors)",
                       description="Train a gated MLP (seeded, deterministic) and save it as .safetensors.")
    p.add_argument("--data", default=DATA, help="data set name (see 'shrinknet datasets') or an .npz file "
                   "with X_train, T_train, X_test, T_test (default: mnist = 5,000-image subset at 20x20)")
    p.add_argument("--hidden", type=_whole, nargs="+", default=[100], metavar="K",
                   help="hidden layer widths, e.g. --hidden 50 50 (default: 100)")
    p.add_argument("--hidden-activation", default="sigmoid", choices=["sigmoid", "tanh", "relu", "gelu"],
                   help="activation of every hidden layer (default: sigmoid, the paper's)")
    p.add_argument("--output-activation", default="sigmoid", choices=["sigmoid", "softmax", "identity"],
                   help="activation of the output layer (default: sigmoid, the paper's)")
    p.add_argument("--loss", default="auto", choices=["auto", "sse", "cross-entropy"],
                   help="training " + LOSS_HELP + "; with the default sigmoid output: sse")
    p.add_argument("--epochs", type=_whole, default=60, help="passes over the training set (default: 60)")
    p.add_argument("--lr", type=_number, default=3e-3, help="learning rate (default: 3e-3)")
    p.add_argument("--batch-size", type=_whole, default=50, help="mini-batch size (default: 50)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="optimizer (default: adam)")
    p.add_argument("--target-accuracy", type=_number, default=None,
                   help="stop once training accuracy reaches this (deliberate under-training)")
    p.add_argument("--seed", type=_whole, default=0, help="seed for initialisation and shuffling (default: 0)")
    p.add_argument("--out", required=True, help="where to write the model (.safetensors)")


#: what a model folder is, and its options (shrinknet.folders does the work)
FOLDER_HELP = ("a Hugging Face model folder written by save_pretrained (config.json and safetensors weights; a "
               "causal LM, masked LM, sequence or image classifier of transformers; code in the folder is never run)")
DATA_HELP = (f"data set name or .npz file (default: {DATA}); for a model folder: a text file (language models: cut "
             f"into windows of --seq-len tokens by the folder's tokenizer; a masked LM's get 15%% of their tokens "
             f"masked, seeded) or an .npz / .safetensors file whose keys are the model's input names (input_ids, "
             f"attention_mask, pixel_values, ...) and labels, as the model takes them")
UNITS_HELP = ("'ffn' (FFN neurons), 'heads' (attention heads), 'blocks' (whole attention / MLP sublayers, alone) or "
              "module names (default: ffn heads)")
FOLDER_SAMPLES = 128
#: compare's criteria: for a model file (the paper's and cheap ones) and for a model folder (no per-output passes)
CRITERIA = ["taylor1", "taylor2", "taylor2-exact", "taylor1-abs", "l1-out", "l2-in", "mean-activation", "random"]
FOLDER_CRITERIA = ["taylor1", "taylor2-sampled", "fisher", "mean-activation", "random"]


def _folder_options(p, units: bool) -> None:
    """The options only a model folder takes: test data, window length (and for prune / compare, which
    have no --units and --eval-samples yet, those)."""
    p.add_argument("--test-data", default=None, metavar="PATH",
                   help="model folder only: held-out data in --data's forms, on which the report gives perplexity "
                   "(language models) or accuracy before and after (default: the calibration data)")
    p.add_argument("--seq-len", type=_whole, default=None,
                   help="model folder only: tokens per window cut from a text file (default: 128, or the model's "
                   "longest context if shorter)")
    if units:
        p.add_argument("--units", nargs="+", default=None, metavar="UNIT", help="model folder only: " + UNITS_HELP)
        p.add_argument("--eval-samples", type=_whole, default=None,
                       help=f"model folder only: samples of --data the criteria are computed on (seeded; default: "
                       f"{FOLDER_SAMPLES}, 0 = all)")


def _shared(p, compensation_help: str) -> None:
    """The options `prune` and `compare` share: the model, its data, the loss, compensation, device."""
    p.add_argument("model", help="model file written by 'shrinknet train' (.safetensors), or " + FOLDER_HELP)
    p.add_argument("--data", default=DATA, help=DATA_HELP)
    p.add_argument("--loss", default="auto", choices=["auto", "sse", "cross-entropy"], help=LOSS_HELP)
    p.add_argument("--compensation", default="none", choices=["none", "mean", "lstsq"], help=compensation_help)
    p.add_argument("--device", default="cpu", help="torch device to compute on, e.g. cuda (default: cpu)")
    _folder_options(p, units=True)


UNIFORM_HELP = ("keep the same number of units in every layer of a kind (removals in rounds of one per layer); a "
                "transformer so pruned reloads from its config alone")


def _budget_options(p) -> None:
    """The budgets and the cost-aware choice (prune and shrink)."""
    p.add_argument("--keep-params", type=_number, default=None, metavar="FRACTION",
                   help="a budget: stop at the first removal that leaves at most this fraction (0..1) of the model's "
                   "parameters, counted on the shrunk model")
    p.add_argument("--keep-flops", type=_number, default=None, metavar="FRACTION",
                   help="a budget: stop at the first removal that leaves at most this fraction (0..1) of the model's "
                   "FLOPs per sample, counted on the shrunk model")
    p.add_argument("--cost", default=None, choices=["params", "flops"],
                   help="cost-aware choice: units whose removal does not raise the error first, then by score per "
                   "parameter / FLOP their removal saves (default: by score alone)")


def _add_prune(sub):
    p = sub.add_parser("prune", help="prune a saved model and write the results (JSON, CSV, PNG)",
                       description="Remove hidden neurons one at a time without retraining. With no "
                       "stopping option every hidden neuron is removed; several options combine "
                       "(the first one met stops). pruned.safetensors keeps every weight with the final "
                       "gates; 'shrinknet shrink' builds the physically smaller model.")
    _shared(p, "none = the paper's pure removal (default); mean = fold the removed neuron's mean output into "
            "the next bias; lstsq = refit the next layer on the remaining neurons")
    p.add_argument("--eval-on", default="train", choices=["train", "test"],
                   help="which split the criterion and the error are computed on (default: train, as in "
                   "the paper); the other split is tracked as 'test'")
    p.add_argument("--criterion", default=None,
                   help="criterion name (see 'shrinknet criteria'; default: brute-force, for a model folder fisher)")
    p.add_argument("--schedule", default="iterative", choices=["iterative", "single"],
                   help="iterative re-ranking after every removal (default) or a single overall ranking")
    p.add_argument("--n-neurons", type=_whole, default=None, help="stop after removing this many neurons")
    p.add_argument("--fraction", type=_number, default=None,
                   help="stop after removing this fraction (0..1) of the neurons (counted in neurons removed)")
    _budget_options(p)
    p.add_argument("--max-accuracy-drop", type=_number, default=None,
                   help="stop before accuracy falls more than this (absolute, e.g. 0.01) below the start")
    p.add_argument("--max-error-increase", type=_number, default=None,
                   help="stop before the error exceeds (1 + this) x its start (e.g. 0.1 = +10%%)")
    p.add_argument("--float64", action="store_true", help="compute in float64 (default: the model's dtype)")
    p.add_argument("--uniform", action="store_true", help=UNIFORM_HELP)
    p.add_argument("--out", required=True, help="folder for result.json, steps.csv, curves.png, pruned.safetensors")


def _add_shrink(sub):
    p = sub.add_parser("shrink", help="prune a saved model (MLP or nn.Sequential of standard layers), make it "
                       "physically smaller, and report parameters, FLOPs, latency and accuracy before / after",
                       description="Remove units (Linear output features, Conv2d output channels) without "
                       "retraining, then build the smaller model and write it (.safetensors, optionally .onnx) "
                       "with a report. The model file is one written by 'shrinknet train' or by "
                       "shrinknet.save_model(model, path, example_input=...) (see examples/).")
    p.add_argument("model", help="model file (.safetensors), or " + FOLDER_HELP)
    p.add_argument("--data", default=DATA, help=DATA_HELP)
    p.add_argument("--loss", default="auto", choices=["auto", "sse", "cross-entropy"], help=LOSS_HELP)
    p.add_argument("--criterion", default=None, help="criterion name (see 'shrinknet criteria'; default: taylor2, "
                   "for a model folder fisher)")
    p.add_argument("--schedule", default="iterative", choices=["iterative", "single"],
                   help="re-rank after every removal (default) or rank once")
    p.add_argument("--units", nargs="+", default=None, metavar="MODULE",
                   help="names of the Linear / Conv2d modules whose outputs may be removed (default: every one "
                   "but the output layer); for a model folder: " + UNITS_HELP)
    p.add_argument("--fraction", type=_number, default=None,
                   help="stop after removing this fraction (0..1) of the units (counted in units removed)")
    p.add_argument("--n-neurons", type=_whole, default=None, help="stop after removing this many units")
    _budget_options(p)
    p.add_argument("--max-accuracy-drop", type=_number, default=None,
                   help="stop before accuracy (on the evaluation samples) falls more than this below the start")
    p.add_argument("--max-error-increase", type=_number, default=None,
                   help="stop before the error (on the evaluation samples) exceeds (1 + this) x its start")
    p.add_argument("--eval-samples", type=_whole, default=None,
                   help=f"training samples the criteria are computed on (seeded; default: 5000, for a model folder "
                   f"{FOLDER_SAMPLES}; 0 = all)")
    _folder_options(p, units=False)
    p.add_argument("--device", default="cpu", help="torch device to prune on, e.g. cuda (default: cpu); the "
                   "smaller model is written for the CPU")
    p.add_argument("--uniform", action="store_true", help=UNIFORM_HELP)
    p.add_argument("--onnx", action="store_true", help="also export the smaller model to ONNX (needs shrinknet[onnx])")
    p.add_argument("--out", required=True, help="folder for small.safetensors, report.json, result.json, steps.csv "
                   "(a model folder: model/, a model folder with the smaller weights and the tokenizer, in place of "
                   "small.safetensors)")


def _add_demo(sub):
    p = sub.add_parser("demo", help="the main job: train 400-100-10 on the MNIST subset, prune with the "
                       "paper's four criteria and both algorithms, write curves and a summary",
                       description="Train the paper's 400-100-10 sigmoid net on the bundled 5,000-image MNIST "
                       "subset (20x20), prune it with brute-force, taylor1, taylor2 and taylor2-exact under "
                       "single ranking and iterative re-ranking, and write error/accuracy curves (PNG), gain "
                       "error surfaces and a summary table (CSV + Markdown).")
    p.add_argument("--out", default="shrinknet-demo", help="output folder (default: shrinknet-demo)")
    p.add_argument("--quick", action="store_true", help="1,000 training images and 15 epochs (seconds)")


def _add_reproduce(sub):
    p = sub.add_parser("reproduce", help="rerun the paper's experiments: curves, gain surfaces, layer plots, report")

    def description():                                 # the experiments' list loads the paper: only for --help
        from .paper.experiments import EXPERIMENTS
        return ("Train (cached between runs) and prune the paper's networks with brute force, 1st order, 2nd order "
                "(OBD) and 2nd order (exact), under each experiment's algorithms, and write every step, the curves, "
                "gain error surfaces and per-layer plots. Experiments: " + ", ".join(EXPERIMENTS) + ".")
    p.late_description = description
    p.add_argument("ids", nargs="*", metavar="ID", help="experiments to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small data and few epochs (minutes, for a smoke test)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="training seeds per experiment (default: 5, with --quick 1)")
    p.add_argument("--out", default="reproduction", help="output folder (default: reproduction)")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="also write the Markdown report here, with compact figures in a 'reproduction' "
                   "folder beside it (the committed one: docs/REPRODUCTION.md)")


def _add_compare(sub):
    p = sub.add_parser("compare", help="judge criteria against the exact oracle along its removal path (CSV, PNG)",
                       description="At every step of the exact serial brute-force prune, score the remaining "
                       "neurons with each criterion and record its Spearman and Kendall rank correlation with "
                       "the exact change in error, whether its top choice is the oracle's, and its regret; also "
                       "run each criterion's own pruning path. Writes compare.csv, summary.csv, paths.csv, "
                       "compare.png and paths.png.")
    _shared(p, "score and remove with this compensation on (default: none)")
    p.add_argument("--criteria", nargs="+", default=None,
                   help="criteria to judge (default: the paper's Taylor estimates and common cheap ones: "
                   f"{' '.join(CRITERIA)}; for a model folder {' '.join(FOLDER_CRITERIA)})")
    p.add_argument("--steps", type=_whole, default=None, help="compare at the first N oracle steps only")
    p.add_argument("--out", required=True, help="output folder")


def _add_lenet(sub):
    p = sub.add_parser("lenet-table", help="LeNet-300-100 on Fashion-MNIST: every criterion, with and without "
                       "compensation, beside the published Neuron Merging figures (Markdown table)",
                       description="Train (once, if --cache is given) a 784-300-100-10 ReLU net on Fashion-MNIST and write the "
                       "test accuracy at 50% and 70% of the hidden neurons removed, per criterion and compensation.")
    p.add_argument("--out", required=True, help="Markdown file to write (the committed one: docs/LENET_FASHION.md)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="folder to keep the trained net in between runs (default: none, train it every time)")
    p.add_argument("--eval-samples", type=_whole, default=5000,
                   help="training images the criteria and compensation are computed on (default: 5000)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="shrinknet", description="Remove whole neurons from trained networks "
                                 "without retraining, judged against an exact brute-force oracle.")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--version", action="version", version=f"shrinknet {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_train(sub)
    _add_prune(sub)
    _add_shrink(sub)
    _add_reproduce(sub)
    _add_compare(sub)
    _add_lenet(sub)
    sub.add_parser("criteria", help="list the criteria and what they compute")
    sub.add_parser("datasets", help="list the data set names and what each needs installed")
    for p in sub.choices.values():
        # --quiet after the command too (SUPPRESS: a command not given it keeps the global value)
        p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    return ap


def cmd_train(a, progress: bool) -> None:
    from .paper.data import load
    from .models import MLP
    from .paper.train import TrainConfig, train

    if a.epochs < 1:
        raise ShrinkNetError(f"--epochs: expected at least 1, got {a.epochs}")
    d = load(a.data)
    m = MLP([d.n_inputs, *a.hidden, d.n_outputs], a.hidden_activation, a.output_activation, seed=a.seed)
    loss = _loss(a, m)
    cfg = TrainConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, optimizer=a.optimizer, loss=loss,
                      seed=a.seed, target_accuracy=a.target_accuracy)
    h = train(m, d.X_train, d.T_train, cfg, progress=progress)
    from .context import evaluate
    test = evaluate(m, d.X_test, d.T_test, loss)
    path = m.save(a.out)
    acc = h[-1]["accuracy"] if h else None
    print(f"trained {'-'.join(map(str, m.sizes))} on {d.name} for {len(h)} epochs: "
          f"train loss {h[-1]['loss'] if h else float('nan'):.4f}"
          + (f", train accuracy {acc:.4f}, test accuracy {test['accuracy']:.4f}" if acc is not None else "")
          + f"\nsaved {path}")


def cmd_prune(a, progress: bool) -> None:
    import torch

    from . import plots
    from .paper.data import load
    from .models import MLP
    from .pruning import Stop, prune

    stop = Stop(a.n_neurons, a.fraction, a.max_accuracy_drop, a.max_error_increase, params=a.keep_params,
                flops=a.keep_flops)
    try:
        plots.check_available()
        no_plot = None
    except MissingDependencyError as e:             # the core alone: everything but the figure
        no_plot = e
    if a.folder:                                       # a Hugging Face model folder
        return _prune_folder(a, stop, no_plot, progress)
    m = MLP.load(a.model)
    d = load(a.data)
    ev, other = ((d.X_train, d.T_train), (d.X_test, d.T_test))[:: 1 if a.eval_on == "train" else -1]
    out = Path(a.out)
    with resumable(out, "shrinknet prune") as partial:
        r = prune(m, *ev, criterion=a.criterion, schedule=a.schedule, stop=stop, loss=_loss(a, m), test=other,
                  compensation=a.compensation, device=a.device, dtype=torch.float64 if a.float64 else None,
                  progress=progress, checkpoint=partial / "prune", uniform=a.uniform, cost=a.cost)
        r.save_json(out / "result.json")
        r.save_csv(out / "steps.csv")
        if no_plot is None:
            plots.plot_curves([r], out / "curves.png", title=f"{a.criterion} ({a.schedule}) on {d.name}")
        r.apply(m).save(out / "pruned.safetensors")
        gone = _drop_stale(out, "prune", ["result.json", "steps.csv", "pruned.safetensors"]
                           + (["curves.png"] if no_plot is None else []))
    acc = f", accuracy {r.initial_accuracy:.4f} -> {r.final_accuracy:.4f}" if r.accuracies is not None else ""
    if r.fraction_kept is not None:
        acc += (f"; kept {r.fraction_kept['params']:.1%} of the parameters, {r.fraction_kept['flops']:.1%} of the "
                f"FLOPs per sample")
    last = r.final_error
    if r.resumed_steps:
        print(f"resumed: {r.resumed_steps} steps replayed from the interrupted run's {out}/.partial")
    print(f"removed {r.n_removed} of {r.initially_active} hidden neurons ({r.stop_reason}) in {r.seconds:.1f}s: "
          f"error {r.initial_error:.4f} -> {last:.4f}{acc}\n"
          + "".join(f"kept {name}: {len(kept)} of {size}\n"              # as shrink's report words it
                    for (name, kept), size in zip(r.keep_by_name().items(), r.hidden_sizes)) + f"wrote {out}/ "
          + ("(result.json, steps.csv, curves.png, pruned.safetensors)" if no_plot is None else
             f"(result.json, steps.csv, pruned.safetensors; no curves.png: {no_plot})") + _removed(gone))


def cmd_shrink(a, progress: bool) -> None:
    import numpy as np
    import torch

    from .paper.data import load
    from .pruning import Stop, prune
    from .models import FORMAT as MLP_FORMAT
    from .saving import check_onnx, load_model, read_meta, save_shrunk
    from .stats import compare_models
    from .surgery import shrink

    if a.fraction is None and a.n_neurons is None and a.max_accuracy_drop is None and a.max_error_increase is None \
            and a.keep_params is None and a.keep_flops is None:
        raise ShrinkNetError("shrink: expected a stopping option (--fraction, --n-neurons, --max-accuracy-drop, "
                             "--max-error-increase, --keep-params or --keep-flops); without one every unit would go")
    if a.eval_samples is not None and a.eval_samples < 0:
        raise ShrinkNetError(f"--eval-samples: expected a count >= 0 (0 = all), got {a.eval_samples}")
    if a.folder:                                       # a Hugging Face model folder
        return _shrink_folder(a, Stop(a.n_neurons, a.fraction, a.max_accuracy_drop, a.max_error_increase,
                                      params=a.keep_params, flops=a.keep_flops), progress)
    if a.onnx:
        check_onnx()                                  # before the work, not after it
    meta = read_meta(a.model)
    if a.units is not None and meta.get("format") == MLP_FORMAT:
        raise ShrinkNetError(f"--units: {a.model} is an MLP (written by 'shrinknet train'), whose units are all its "
                             f"hidden neurons; expected no --units, got {' '.join(a.units)}")
    model = load_model(a.model)
    d = load(a.data)
    if "input_shape" not in meta and meta.get("format") != "shrinknet-mlp":
        raise ShrinkNetError(f"model file {a.model}: no input shape recorded; save it with "
                             f"shrinknet.save_model(model, path, example_input=...)")
    shape = json.loads(meta["input_shape"]) if "input_shape" in meta else [d.n_inputs]
    if int(np.prod(shape)) != d.n_inputs:
        raise ShrinkNetError(f"--data {a.data}: expected samples of {int(np.prod(shape))} values for input shape "
                             f"{shape}, got {d.n_inputs}")
    Xtr, Xte = (torch.as_tensor(x, dtype=torch.float32).reshape(-1, *shape) for x in (d.X_train, d.X_test))
    Ttr, Tte = torch.as_tensor(d.T_train), torch.as_tensor(d.T_test)
    if a.eval_samples and a.eval_samples < len(Xtr):
        idx = torch.as_tensor(np.sort(np.random.default_rng(0).permutation(len(Xtr))[:a.eval_samples]))
        Xtr, Ttr = Xtr[idx], Ttr[idx]
    stop = Stop(a.n_neurons, a.fraction, a.max_accuracy_drop, a.max_error_increase, params=a.keep_params,
                flops=a.keep_flops)
    out = Path(a.out)
    with resumable(out, "shrinknet shrink") as partial:
        r = prune(model, Xtr, Ttr, criterion=a.criterion, schedule=a.schedule, stop=stop, loss=_loss(a, model),
                  units=a.units, device=a.device, progress=progress, checkpoint=partial / "prune",
                  uniform=a.uniform, cost=a.cost)
        small = shrink(model, r, Xtr[:1])
        report = compare_models(model, small, Xtr[:1], data=(Xte, Tte), kept=r)
        files = save_shrunk(small, out, Xtr[:1], report, onnx=a.onnx)
        r.save_json(out / "result.json")
        r.save_csv(out / "steps.csv")
        files += ["result.json", "steps.csv"]
        gone = _drop_stale(out, "shrink", files)
    files = ", ".join(files)
    if r.resumed_steps:
        print(f"resumed: {r.resumed_steps} steps replayed from the interrupted run's {out}/.partial")
    print(f"removed {r.n_removed} of {r.initially_active} units with {a.criterion} ({a.schedule}; {r.stop_reason}) "
          f"in {r.seconds:.1f}s, no retraining\n{report}\n(accuracy on the {len(Xte)} test samples)\n"
          f"wrote {out}/ ({files}){_removed(gone)}")


def cmd_compare(a, progress: bool) -> None:
    from .compare import compare
    from .paper.data import load
    from .models import MLP

    if a.folder:                                       # a Hugging Face model folder
        return _compare_folder(a, progress)
    m, d = MLP.load(a.model), load(a.data)
    with resumable(a.out, "shrinknet compare") as partial:
        res = compare(m, d.X_train, d.T_train, a.criteria, _loss(a, m), steps=a.steps, test=(d.X_test, d.T_test),
                      compensation=a.compensation, device=a.device, progress=progress, checkpoint=partial)
        files = [Path(f).name for f in res.save(a.out)]
        gone = _drop_stale(Path(a.out), "compare", files)
    print(_text_table(res.summary_rows()))
    print(f"wrote {Path(a.out)}/ ({', '.join(files)}) in {res.seconds:.1f}s{_removed(gone)}")


# ---- Hugging Face model folders (shrinknet.folders reads them) ---------------------------------------------
def _model_or_folder(a) -> None:
    """Set ``a.folder`` (whether the model is a folder) and the defaults that depend on it; refuse the
    options only a model folder takes when given a model file."""
    a.folder = Path(a.model).is_dir()
    if a.folder:
        if a.data == DATA and not Path(DATA).exists():      # the model files' default data set
            raise ShrinkNetError(f"--data: a model folder needs its own calibration data: expected a text file or an "
                                 f".npz / .safetensors file of its inputs and labels, got the default data set "
                                 f"{DATA!r}")
        if a.cmd == "shrink" and a.onnx:
            raise ShrinkNetError("--onnx: expected a model file; a model folder is written as a folder (model/)")
        return
    folder_only = ["--test-data", "--seq-len"] + (["--units", "--eval-samples"] if a.cmd != "shrink" else [])
    given = [o for o in folder_only if getattr(a, o[2:].replace("-", "_")) is not None]
    if given:
        raise ShrinkNetError(f"{given[0]}: only a model folder takes it; {a.model} is a model file, expected no "
                             f"{given[0]} (its data set has its own test split)")
    if a.cmd in ("prune", "shrink") and a.criterion is None:
        a.criterion = "taylor2" if a.cmd == "shrink" else "brute-force"
    if a.cmd == "shrink":
        a.eval_samples = 5000 if a.eval_samples is None else a.eval_samples
    if a.cmd == "compare" and a.criteria is None:
        a.criteria = CRITERIA


def _folder_inputs(a):
    """(the Folder, calibration (X, T), test (X, T) or None, words for the report) of a model folder run."""
    from . import folders

    if a.eval_samples is not None and a.eval_samples < 0:
        raise ShrinkNetError(f"--eval-samples: expected a count >= 0 (0 = all), got {a.eval_samples}")
    folders.read_config(a.model)                       # the refusals that need no torch model first
    fm = folders.load_model(a.model)
    longest = folders.max_positions(fm.model)
    seq = a.seq_len if a.seq_len is not None else min(128, longest or 128)
    low = 2 if fm.kind == "causal-lm" else 1
    if seq < low or (longest is not None and seq > longest):
        raise ShrinkNetError(f"--seq-len: expected a length in [{low}, {longest}] (the model's context), got {seq}")
    tokenizer = []                                     # loaded once, and only for a text file

    def tok():
        if not tokenizer:
            tokenizer.append(folders.load_tokenizer(a.model))
        return tokenizer[0]

    X, T = folders.load_data(a.data, fm, seq_len=seq, tokenizer=tok, name="--data")
    n = FOLDER_SAMPLES if a.eval_samples is None else a.eval_samples
    X, T = folders.subset(X, T, n)
    test = None if a.test_data is None else folders.load_data(a.test_data, fm, seq_len=seq, tokenizer=tok,
                                                             name="--test-data")

    def what(path):
        return "windows" if fm.language_model and Path(path).suffix not in (".npz", ".safetensors") else "samples"
    words = {"calibration": f"{len(T)} {what(a.data)} of {a.data}",
             "quality on": (f"the {len(test[1])} {what(a.test_data)} of {a.test_data}" if test is not None else
                            f"the {len(T)} calibration {what(a.data)} (no --test-data)")}
    return fm, (X, T), test, words


def _folder_loss(a) -> str:
    return "cross-entropy" if a.loss == "auto" else a.loss


def _quality_table(kind: str, before: dict, after: dict) -> str:
    """Loss and perplexity (language models) or accuracy (classifiers), before and after, as a text table."""
    rows = [("loss (nats per " + ("token)" if kind in ("causal-lm", "masked-lm") else "sample)"),
             f"{before['loss']:.4f}", f"{after['loss']:.4f}", f"{after['loss'] / before['loss']:.1%}")]
    if "perplexity" in before:
        rows.append(("perplexity", f"{before['perplexity']:.3f}", f"{after['perplexity']:.3f}",
                     f"{after['perplexity'] / before['perplexity']:.1%}"))
    else:
        rows.append(("accuracy", f"{before['accuracy']:.2%}", f"{after['accuracy']:.2%}",
                     f"{100 * (after['accuracy'] - before['accuracy']):+.2f} pt"))
    head = ("", "before", "after", "after/before")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
                     for r in [head, *rows])


def _prune_folder(a, stop, no_plot, progress: bool) -> None:
    import torch

    from . import folders, plots
    from .pruning import prune

    fm, calib, test, words = _folder_inputs(a)
    a.criterion = a.criterion or "fisher"
    if a.eval_on == "test" and test is None:
        raise ShrinkNetError("--eval-on test: expected --test-data with a model folder, got none")
    ev, other = (calib, test) if a.eval_on == "train" else (test, calib)
    if a.eval_on == "test":                            # the criteria see the test data; the report too
        words["calibration"] = f"{len(test[1])} samples of --test-data {a.test_data} (--eval-on test)"
    out = Path(a.out)
    with resumable(out, "shrinknet prune") as partial:
        r = prune(fm.model, *ev, criterion=a.criterion, schedule=a.schedule, stop=stop, loss=_folder_loss(a),
                  test=other, units=a.units or ["ffn", "heads"], compensation=a.compensation, device=a.device,
                  dtype=torch.float64 if a.float64 else None, progress=progress, checkpoint=partial / "prune",
                  uniform=a.uniform, cost=a.cost)
        q = test if test is not None else calib
        before, after = folders.quality(fm.model, *q, fm.kind), folders.quality(r.model, *q, fm.kind)
        r.save_json(out / "result.json")
        r.save_csv(out / "steps.csv")
        write_text(out / "report.json", json.dumps({"model": str(a.model), "kind": fm.kind, **words,
                                                    "before": before, "after": after}, indent=1))
        files = ["result.json", "steps.csv", "report.json"]
        if no_plot is None:
            plots.plot_curves([r], out / "curves.png", title=f"{a.criterion} ({a.schedule}) on {Path(a.model).name}")
            files.append("curves.png")
        gone = _drop_stale(out, "prune", files)
    if r.resumed_steps:
        print(f"resumed: {r.resumed_steps} steps replayed from the interrupted run's {out}/.partial")
    print(f"removed {r.n_removed} of {r.initially_active} units with {a.criterion} ({a.schedule}; {r.stop_reason}) "
          f"in {r.seconds:.1f}s, gates only ('shrinknet shrink' makes the smaller model)\n"
          f"{_quality_table(fm.kind, before, after)}\n(on {words['quality on']}; calibration: {words['calibration']})\n"
          + "".join(f"kept {name}: {len(kept)} of {size}\n" for (name, kept), size in zip(r.keep_by_name().items(),
                                                                                       r.hidden_sizes))
          + f"wrote {out}/ ({', '.join(files)}{'' if no_plot is None else f'; no curves.png: {no_plot}'})"
          + _removed(gone))


def _shrink_folder(a, stop, progress: bool) -> None:
    from . import folders
    from .pruning import prune
    from .stats import compare_models
    from .surgery import shrink

    fm, (X, T), test, words = _folder_inputs(a)    # (cmd_shrink has checked that a stop is given)
    criterion = a.criterion or "fisher"
    out = Path(a.out)
    with resumable(out, "shrinknet shrink") as partial:
        r = prune(fm.model, X, T, criterion=criterion, schedule=a.schedule, stop=stop, loss=_folder_loss(a),
                  units=a.units or ["ffn", "heads"], device=a.device, progress=progress, checkpoint=partial / "prune",
                  uniform=a.uniform, cost=a.cost)
        small = shrink(fm.model, r)
        example = {k: v[:1] for k, v in X.items()}
        report = compare_models(fm.model, small, example, kept=r)
        q = test if test is not None else (X, T)
        before, after = folders.quality(fm.model, *q, fm.kind), folders.quality(small, *q, fm.kind)
        if "accuracy" in before:
            report.before.accuracy, report.after.accuracy = before["accuracy"], after["accuracy"]
        _, reloads = folders.write_folder(small, out / "model", source=a.model)
        write_text(out / "report.json", json.dumps({**report.to_dict(), "model": str(a.model), "kind": fm.kind,
                                                    **words, "quality": {"before": before, "after": after},
                                                    "folder": "model", "plain_from_pretrained": reloads}, indent=1))
        r.save_json(out / "result.json")
        r.save_csv(out / "steps.csv")
        files = ["model/", "report.json", "result.json", "steps.csv"]
        gone = _drop_stale(out, "shrink", files)
    if r.resumed_steps:
        print(f"resumed: {r.resumed_steps} steps replayed from the interrupted run's {out}/.partial")
    how = (f"transformers' from_pretrained reloads {out}/model" if reloads else
           f"shrinknet.from_pretrained reloads {out}/model (its layers differ in size, which the config records "
           f"for shrinknet; a plain from_pretrained refuses it, naming shrinknet.from_pretrained)")
    print(f"removed {r.n_removed} of {r.initially_active} units with {criterion} ({a.schedule}; {r.stop_reason}) "
          f"in {r.seconds:.1f}s, no retraining\n{report}\n{_quality_table(fm.kind, before, after)}\n"
          f"(on {words['quality on']}; calibration: {words['calibration']})\n{how}\n"
          f"wrote {out}/ ({', '.join(files)}){_removed(gone)}")


def _compare_folder(a, progress: bool) -> None:
    from .compare import compare

    fm, (X, T), test, _ = _folder_inputs(a)
    with resumable(a.out, "shrinknet compare") as partial:
        res = compare(fm.model, X, T, a.criteria or FOLDER_CRITERIA, _folder_loss(a), steps=a.steps, test=test,
                      compensation=a.compensation, units=a.units or ["ffn", "heads"], device=a.device,
                      progress=progress, checkpoint=partial)
        files = [Path(f).name for f in res.save(a.out)]
        gone = _drop_stale(Path(a.out), "compare", files)
    print(_text_table(res.summary_rows()))
    print(f"wrote {Path(a.out)}/ ({', '.join(files)}) in {res.seconds:.1f}s{_removed(gone)}")


#: the files each command may write into its --out folder, with or without options and optional packages
_FILES = {"prune": ("result.json", "steps.csv", "curves.png", "pruned.safetensors", "report.json"),
          "shrink": ("small.safetensors", "report.json", "small.onnx", "result.json", "steps.csv"),
          "compare": ("compare.csv", "paths.csv", "summary.csv", "compare.png", "paths.png")}


def _drop_stale(out: Path, cmd: str, written) -> list[str]:
    """Remove the files an earlier run of ``cmd`` left in ``out`` that this run did not write (the
    small.onnx of a run with --onnx, a curves.png from when matplotlib was installed), so that the
    folder holds one run's outputs; called once this run's files are written. Other files are left."""
    gone = [name for name in _FILES[cmd] if name not in written and (out / name).is_file()]
    for name in gone:
        (out / name).unlink()
    return gone


def _removed(gone: list[str]) -> str:
    return f"; removed the earlier run's {', '.join(gone)}" if gone else ""


def _text_table(rows: list[dict]) -> str:
    """Rows of one keys as right-aligned text columns, numbers to 3 decimals (no pandas needed)."""
    if not rows:
        return ""
    cells = [list(rows[0])] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(" ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


#: each command's outputs: "dir" (a folder it writes files into) or "file"
_OUTPUTS = {"demo": ("out", "dir"), "reproduce": ("out", "dir"), "compare": ("out", "dir"), "prune": ("out", "dir"),
            "shrink": ("out", "dir"), "train": ("out", "file"), "lenet-table": ("out", "file")}


def check_output(path, kind: str, option: str = "--out") -> None:
    """Refuse, before any work, an output the command could not write: a file where a folder is
    expected or the reverse, or a place this user cannot write to (probed with a temporary file,
    removed at once; a folder that does not exist yet is not created here)."""
    import tempfile
    if not str(path).strip():
        raise ShrinkNetError(f"{option}: expected a {'folder' if kind == 'dir' else 'file'} path, got {path!r}")
    p = Path(path)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ShrinkNetError(f"{option}: expected a folder, got the existing file {p}")
    if kind == "file" and p.is_dir():
        raise ShrinkNetError(f"{option}: expected a file name, got the existing folder {p}")
    where = p if kind == "dir" and p.is_dir() else next((q for q in [p.parent, *p.parent.parents] if q.exists()),
                                                        Path("."))
    if not where.is_dir():
        raise ShrinkNetError(f"{option}: expected a path under a folder, but {where} is a file")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ShrinkNetError(f"{option}: cannot write in {where} ({e.strerror or e}); expected a writable place") \
            from None


def _dispatch(a, argv, progress) -> None:
    """Run the command that `a` names."""
    if a.cmd in ("prune", "shrink", "compare"):
        _model_or_folder(a)                            # a model file or a Hugging Face model folder
    if a.cmd == "demo":
        from .paper.demo import run_demo
        run_demo(a.out, quick=a.quick, progress=progress)
    elif a.cmd == "reproduce":
        from .paper.experiments import reproduce
        args = sys.argv[1:] if argv is None else argv
        reproduce(a.ids, a.out, a.quick, a.report, progress, command="shrinknet " + " ".join(args), seeds=a.seeds)
    elif a.cmd == "lenet-table":
        from .paper.lenet_table import run
        print(f"wrote {run(a.out, a.eval_samples, cache=a.cache, progress=progress)}")
    elif a.cmd == "compare":
        cmd_compare(a, progress)
    elif a.cmd == "train":
        cmd_train(a, progress)
    elif a.cmd == "prune":
        cmd_prune(a, progress)
    elif a.cmd == "shrink":
        cmd_shrink(a, progress)
    elif a.cmd == "criteria":
        from .criteria import describe_criteria
        for k, v in describe_criteria().items():
            print(f"{k:20s} {v}")
    elif a.cmd == "datasets":
        from .paper.data import available_datasets, needs
        for name in available_datasets():
            print(f"{name:18s} {needs(name)}")


@contextlib.contextmanager
def _only_run_in(folder):
    """Hold an exclusive lock on ``folder`` (created if need be, and removed again if the run leaves it
    empty) for the whole command, so that two runs given the same --out cannot mix their files."""
    try:
        import fcntl
    except ImportError:                                # not on this platform: no lock
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            raise ShrinkNetError(f"--out {folder}: another shrinknet run is writing there now; expected a folder no "
                                 f"other run uses (wait for it, or choose another --out)") from None
        yield
    finally:
        # only the run that holds the lock tidies up, and before it lets go (a refused run that also found
        # the folder missing must not remove the one the other run is writing into)
        if locked and created:
            with contextlib.suppress(OSError):
                if not any(folder.iterdir()):
                    folder.rmdir()
        os.close(fd)


#: commands that keep their finished steps (in <--out>/.partial, or <--out>.partial beside a file) and resume
RESUMABLE = {"demo", "prune", "shrink", "compare", "reproduce", "lenet-table"}


def _resume_hint(a) -> str:
    """What an interrupted command leaves behind, and how to go on."""
    if a.cmd in RESUMABLE:
        kept = Path(f"{a.out}.partial") if _OUTPUTS[a.cmd][1] == "file" else Path(a.out) / ".partial"
        if not (kept.is_dir() and any(p.is_file() for p in kept.rglob("*"))):
            return "it stopped before its first step was done, so nothing was kept: run the command again"
        return f"the finished steps are kept in {kept}: run the same command again to resume from there"
    return f"every file {a.cmd} had written is whole, but it does not resume: run the command again"


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    progress = False if a.quiet else None          # None: a bar once a part has run 2 s, also into a log
    try:
        lock = contextlib.nullcontext()
        if a.cmd in _OUTPUTS:                          # checked before the work, not after it
            dest, kind = _OUTPUTS[a.cmd]
            check_output(getattr(a, dest), kind)
            if a.cmd == "reproduce" and a.report is not None:
                check_output(a.report, "file", "--report")
            if kind == "dir":                          # (one file is written whole, by a rename, anyway)
                lock = _only_run_in(getattr(a, dest))
        with lock:
            _dispatch(a, argv, progress)
    except ShrinkNetError as e:
        print(f"shrinknet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                          # Ctrl-C: one line, not a traceback
        print(f"shrinknet: interrupted; {_resume_hint(a)}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:                   # an optional package imported without require()
        extra = _EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"shrinknet: error: {a.cmd} needs the optional package {e.name!r}, which is not installed: "
              f"pip install 'shrinknet[{extra}]'", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
