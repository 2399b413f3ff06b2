"""Removal orders and errors, bit for bit: a fingerprint of what the package decides, to compare two trees.

    python benchmarks/orders.py --out orders.json                 # record (a few minutes on 2 cores)
    python benchmarks/orders.py --out orders.json --only mlp cnn  # only the models whose name starts so
    python benchmarks/orders.py --compare A.json B.json           # identical? exit 1 on any difference

For small seeded models (the paper's MLPs of the test suite's sizes, an ``nn.Sequential`` read as an
MLP, a Conv-BN-ReLU CNN, BERT, GPT-2, ViT, LLaMA-style and ``nn.TransformerEncoder`` models as
tests/test_transformers.py builds them, and the two transformer examples' models at their ``--quick``
sizes) it runs ``shrinknet.prune`` with every registered criterion, under both schedules, a few with
compensation "mean" / "lstsq", and records for each run the removal order, the error (and accuracy)
after every step and the criterion's predicted change, every float as ``float.hex`` (exact), or the
exception's type and message where the call raises. It also records ``shrinknet.score`` of every
criterion on the unpruned model. Runs stop after a modest share of the units (a fraction per model).

The examples' training data (Fashion-MNIST, the Shakespeare corpus) is not assumed to be installed: their
models are built by the examples' own constructors (``make_vit``, ``make_gpt``: seeded random weights,
no training) and fed seeded random inputs of the ``--quick`` shapes (64 calibration images / windows).

Only public calls are used (``prune``, ``score``, ``Stop``, ``MLP``, ``available_criteria``,
``PruneResult`` fields), so the script runs unchanged on a tree before and after a refactor; run it on
both and ``--compare`` the two files. Threads are fixed (``--threads``, default 2) and recorded; the
package's own thread policy (``shrinknet._threads``: MKL's strict mode) is kept by importing shrinknet
before torch. Record both trees with the same thread count: on 8e7d144 orders and errors are the same with 1
and 2 threads, but a few float32 scores of non-MLP models (brute-force-subset on the transformers, fisher and
taylor1 on the ViT example's model) move in their last bits. The file holds no timings, so two runs of one
tree give byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import shrinknet  # noqa: I001  (before torch: the package's thread / MKL policy is set as torch loads)
import numpy as np
import torch
from torch import nn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCHEDULES = ("iterative", "single")
#: criteria run with compensation (where a model takes it), and the modes
COMPENSATED = ("brute-force", "brute-force-literal", "taylor1", "taylor2", "taylor2-exact", "fisher", "l1-out",
               "mean-activation")
MODES = ("mean", "lstsq")


# ---- models: each returns (model, X, T, extra prune keywords) ---------------------------------------------
def _mlp(sizes, act="sigmoid", out="sigmoid", dtype=torch.float64, seed=0):
    """The paper's MLP, its weights redrawn (std 1.5, biases 0.5) so that neurons interact (tests/conftest.py)."""
    m = shrinknet.MLP(sizes, act, out, seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in m.layers:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=torch.float64).to(dtype) * 1.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=torch.float64).to(dtype) * 0.5)
    return m


def _mlp_data(n, n_in, n_out, seed=0, kind="onehot", dtype=torch.float64):
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.normal(size=(n, n_in)), dtype=dtype)
    labels = rng.integers(0, n_out, n)
    if kind == "onehot":
        T = torch.tensor(np.eye(n_out)[labels], dtype=dtype)
    elif kind == "labels":
        T = torch.tensor(labels)
    else:                                   # regression targets
        T = torch.tensor(rng.uniform(0, 1, (n, n_out)), dtype=dtype)
    return X, T


def mlp_model(sizes, act, out, loss, kind, n, dtype):
    def make():
        m = _mlp(sizes, act, out, dtype)
        X, T = _mlp_data(n, sizes[0], sizes[-1], kind=kind, dtype=dtype)
        return m, X, T, {"loss": loss}
    return make


def seq_mlp():
    """An nn.Sequential of Linear / Sigmoid layers (read as the MLP class), seeded weights of std 1.5."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 6), nn.Sigmoid(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3),
                        nn.Sigmoid()).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in seq.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (1.5 if p.dim() == 2 else 0.5))
    X, T = _mlp_data(40, 4, 3)
    return seq, X, T, {"loss": "sse"}


def _randomize_bn(model, seed):
    """Non-trivial BatchNorm statistics and affine parameters (so BN of a zero channel is not zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=m.running_mean.dtype))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=m.running_var.dtype) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(torch.randn(m.num_features, generator=g, dtype=m.bias.dtype))
    return model.eval()


def cnn(dtype):
    """tests/conftest.py's tiny_cnn: Conv-BN-ReLU-pool x 2, Flatten, Linear-ReLU, Linear; (1, 8, 8) in, 4 classes."""
    def make():
        torch.manual_seed(0)
        m = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(5 * 2 * 2, 6), nn.ReLU(), nn.Linear(6, 4)).to(dtype)
        m = _randomize_bn(m, 0)
        g = torch.Generator().manual_seed(0)
        X = torch.randn(24, 1, 8, 8, generator=g, dtype=torch.float64).to(dtype)
        y = torch.randint(0, 4, (24,), generator=g)
        return m, X, y, {}
    return make


# transformers as tests/test_transformers.py makes them: width 16, head_dim 4, FFN 24, vocabulary 40, 3 classes
E, FFN, VOCAB, CLASSES = 16, 24, 40, 3


def _randomize(model, seed):
    """Seeded weights of std 0.3 (norm layers 1 + 0.1 noise), eval mode (tests/test_transformers.py)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            norm = name.rsplit(".", 2)[-2].lower() if "." in name else ""
            is_norm = ("norm" in norm or norm.startswith("ln")) and name.endswith("weight")
            p.copy_(1.0 + 0.1 * r if is_norm else 0.3 * r)
    return model.eval()


def _ids(n, length, seed, high=VOCAB):
    return torch.randint(1, high, (n, length), generator=torch.Generator().manual_seed(seed))


def _lm_data(n, length, seed, high=VOCAB):
    ids = _ids(n, length, seed, high)
    y = torch.roll(ids, -1, 1)
    y[:, -1] = -100
    y[::3, 2] = -100
    return ids, y


def bert():
    import transformers as tf
    cfg = tf.BertConfig(vocab_size=VOCAB, hidden_size=E, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=FFN, max_position_embeddings=16, num_labels=CLASSES,
                        attn_implementation="eager")
    torch.manual_seed(0)
    m = _randomize(tf.BertForSequenceClassification(cfg), 0)
    n, length = 8, 6
    ids = _ids(n, length, 1)
    mask = torch.ones(n, length, dtype=torch.long)
    for i in range(0, n, 3):
        mask[i, length - 1 - i % 4:] = 0
    y = torch.randint(0, CLASSES, (n,), generator=torch.Generator().manual_seed(2))
    return m, {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}, y, {"units": ["heads", "ffn"]}


def gpt2():
    import transformers as tf
    cfg = tf.GPT2Config(vocab_size=VOCAB, n_embd=E, n_layer=2, n_head=4, n_positions=16, n_inner=FFN,
                        attn_implementation="eager", use_cache=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    X, y = _lm_data(6, 6, 2)
    return _randomize(tf.GPT2LMHeadModel(cfg), 0), X, y, {"units": ["heads", "ffn"]}


def vit():
    import transformers as tf
    cfg = tf.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=E, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=FFN, num_labels=CLASSES, attn_implementation="eager")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(12, 1, 8, 8, generator=g), torch.randint(0, CLASSES, (12,), generator=g)
    return _randomize(tf.ViTForImageClassification(cfg), 0), X, y, {"units": ["heads", "ffn"]}


def llama():
    """4 query heads sharing 2 key/value heads (GQA); no biases, so compensation is refused (recorded)."""
    import transformers as tf
    cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=E, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=FFN, max_position_embeddings=16,
                         attn_implementation="eager", use_cache=False)
    torch.manual_seed(0)
    X, y = _lm_data(6, 6, 2)
    return _randomize(tf.LlamaForCausalLM(cfg), 0), X, y, {"units": ["heads", "ffn"]}


def encoder():
    """nn.TransformerEncoder (batch_first, 2 layers) and a linear classifier, float32."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, 4, FFN, dropout=0.0, batch_first=True)
    net = _randomize(nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Flatten(),
                                   nn.Linear(6 * E, CLASSES)), 0)
    g = torch.Generator().manual_seed(4)
    return net, torch.randn(12, 6, E, generator=g), torch.randint(0, CLASSES, (12,), generator=g), \
        {"units": ["heads", "ffn"]}


def _example(module):
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(module)
    finally:
        sys.path.remove(str(EXAMPLES))


def example_vit():
    """examples/vit_fashion.py's model (make_vit, seed 0: the --quick model is the full one), untrained;
    64 seeded standard-normal 28 x 28 images with random labels (--quick calibrates on 64)."""
    ex = _example("vit_fashion")
    m = ex.make_vit(0)
    g = torch.Generator().manual_seed(5)
    return m, torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g), \
        {"units": ["ffn", "heads"]}


def example_gpt():
    """examples/gpt_chars.py's model (make_gpt, 80 characters, seed 0), untrained; 8 seeded random windows of
    its 64-character context, next-character labels (--quick calibrates on 64 windows: 8 keep this model's
    runs to about a minute on 2 shared cores)."""
    ex = _example("gpt_chars")
    m = ex.make_gpt(80, 0)
    ids = _ids(8, 65, 6, high=80)
    return m, ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), {"units": ["ffn", "heads"]}


# name: (make, stop (Stop's fields; None = every unit), criteria (None = every registered one), compensation modes)
# The examples' models (528 and 1040 units) run their own criterion (fisher) and stop (--quick: a fifth of the
# units, and the example's accuracy / loss limit) and a few cheap criteria; the exact oracle (ViT) for a few
# steps only. The GPT example's model is the costliest (1040 units, 64 positions x 80 characters per window).
HALF, QUARTER = {"fraction": 0.5}, {"fraction": 0.25}
VIT_CRITERIA = ("fisher", "taylor1", "mean-activation", "l1-in", "random", "brute-force")
GPT_CRITERIA = ("fisher", "l1-in")
MODELS = {
    "mlp-4-6-5-3-sigmoid-sse-f64": (mlp_model([4, 6, 5, 3], "sigmoid", "sigmoid", "sse", "onehot", 40,
                                              torch.float64), None, None, MODES),
    "mlp-4-8-3-sigmoid-sse-f64": (mlp_model([4, 8, 3], "sigmoid", "sigmoid", "sse", "onehot", 40,
                                            torch.float64), None, None, ()),
    "mlp-4-6-5-3-sigmoid-ce-f64": (mlp_model([4, 6, 5, 3], "sigmoid", "softmax", "cross-entropy", "onehot", 40,
                                             torch.float64), None, None, ()),
    "mlp-4-6-5-3-tanh-ce-f64": (mlp_model([4, 6, 5, 3], "tanh", "softmax", "cross-entropy", "labels", 40,
                                          torch.float64), None, None, ()),
    "mlp-4-6-5-3-relu-regression-f64": (mlp_model([4, 6, 5, 3], "relu", "identity", "sse", "regression", 40,
                                                  torch.float64), None, None, ()),
    "mlp-4-7-3-gelu-sse-f64": (mlp_model([4, 7, 3], "gelu", "sigmoid", "sse", "onehot", 40,
                                         torch.float64), None, None, ()),
    "mlp-20-16-4-sigmoid-sse-f32": (mlp_model([20, 16, 4], "sigmoid", "sigmoid", "sse", "onehot", 200,
                                              torch.float32), HALF, None, MODES),
    "mlp-20-12-10-4-sigmoid-ce-f32": (mlp_model([20, 12, 10, 4], "sigmoid", "softmax", "cross-entropy",
                                                "labels", 200, torch.float32), HALF, None, ()),
    "mlp-12-8-6-5-3-tanh-sse-f32": (mlp_model([12, 8, 6, 5, 3], "tanh", "sigmoid", "sse", "onehot", 100,
                                              torch.float32), HALF, None, ()),
    "mlp-20-16-4-relu-sse-f32": (mlp_model([20, 16, 4], "relu", "sigmoid", "sse", "onehot", 200,
                                           torch.float32), HALF, None, ()),
    "seq-mlp-f64": (seq_mlp, None, None, ()),
    "cnn-f64": (cnn(torch.float64), HALF, None, ()),
    "cnn-f32": (cnn(torch.float32), HALF, None, ()),
    "bert": (bert, QUARTER, None, MODES),
    "gpt2": (gpt2, QUARTER, None, ()),
    "vit": (vit, QUARTER, None, ()),
    "llama": (llama, QUARTER, None, MODES),
    "encoder": (encoder, QUARTER, None, ()),
    "example-vit-quick": (example_vit, {"fraction": 0.2, "max_accuracy_drop": 0.01}, VIT_CRITERIA, ()),
    "example-gpt-quick": (example_gpt, {"fraction": 0.2, "max_error_increase": 0.05}, GPT_CRITERIA, ()),
}
#: on the examples' models, the exact oracle for this many steps only (it scores all 528 units a step)
EXAMPLE_ORACLE_STEPS = 2


# ---- recording ----------------------------------------------------------------------------------------------
def _hex(x):
    return None if x is None else float(x).hex()


def _hexes(xs):
    return None if xs is None else [_hex(x) for x in xs]


def _error(e: BaseException) -> dict:
    return {"exception": type(e).__name__, "message": str(e).splitlines()[0] if str(e) else ""}


def record_run(make, criterion, schedule, stop, compensation) -> dict:
    model, X, T, kw = make()
    try:
        r = shrinknet.prune(model, X, T, criterion, schedule, stop=stop, compensation=compensation,
                            progress=False, **kw)
    except Exception as e:  # noqa: BLE001  (what raises, and how, is part of the behaviour recorded)
        return _error(e)
    return {"removed": [[int(l), int(u)] for l, u in r.removed], "errors": _hexes(r.errors),
            "predicted": _hexes(r.predicted), "accuracies": _hexes(r.accuracies),
            "initial_error": _hex(r.initial_error), "initial_accuracy": _hex(r.initial_accuracy),
            "stop_reason": r.stop_reason, "hidden_sizes": [int(k) for k in r.hidden_sizes]}


def record_scores(make, criterion) -> dict:
    model, X, T, kw = make()
    try:
        s = shrinknet.score(model, X, T, criterion, progress=False, **kw)
    except Exception as e:  # noqa: BLE001
        return _error(e)
    return {"scores": [_hexes(np.asarray(a, dtype=np.float64).ravel().tolist()) for a in s]}


def _stop(name, fields, criterion):
    if MODELS[name][2] is not None and criterion == "brute-force":
        return shrinknet.Stop(n_neurons=EXAMPLE_ORACLE_STEPS)
    return None if fields is None else shrinknet.Stop(**fields)


def plan(only=None):
    """(model, key, function, arguments) of every recording, in a fixed order."""
    crits = shrinknet.available_criteria()
    jobs = []
    for name, (make, stop, chosen, modes) in MODELS.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        names = [c for c in crits if chosen is None or c in chosen]
        for c in names:
            jobs.append((name, f"{name}/{c}/score", record_scores, (make, c)))
        for c in names:
            for schedule in SCHEDULES:
                for comp in ("none", *(modes if c in COMPENSATED else ())):
                    jobs.append((name, f"{name}/{c}/{schedule}/{comp}", record_run,
                                 (make, c, schedule, _stop(name, stop, c), comp)))
    return jobs


def _git(*args) -> str | None:
    src = Path(shrinknet.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _tree() -> dict:
    """Which source was measured: the checkout's HEAD, the last commit that changed src/, and whether
    src/ has changes not committed (None where the package is not in a git checkout)."""
    status = _git("status", "--porcelain", "--", ".")
    return {"head": _git("rev-parse", "--short", "HEAD"), "src_commit": _git("log", "-1", "--format=%h", "--", "."),
            "src_modified": None if status is None else bool(status)}


def record(only=None, threads=2, log=sys.stderr) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    units = {}                              # model -> its number of units (for the record)
    runs = {}
    t_all = time.perf_counter()
    for name, key, fn, args in plan(only):
        t0 = time.perf_counter()
        rec = runs[key] = fn(*args)
        if "hidden_sizes" in rec:
            units.setdefault(name, sum(rec["hidden_sizes"]))
        what = rec.get("exception") or ("scores" if "scores" in rec else f"{len(rec['removed'])} removed")
        print(f"{time.perf_counter() - t0:7.2f} s  {key}  ({what})", file=log, flush=True)
    print(f"total {time.perf_counter() - t_all:.1f} s, {len(runs)} recordings", file=log, flush=True)
    meta = {"shrinknet": shrinknet.__version__, "tree": _tree(), "source": str(Path(shrinknet.__file__).parent),
            "backend": shrinknet.backend(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": threads,
            "env": {k: os.environ.get(k) for k in ("MKL_CBWR", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                   "SHRINKNET_FUSED")},
            "criteria": shrinknet.available_criteria(), "units": units}
    return {"meta": meta, "runs": runs}


# ---- comparing two files ----------------------------------------------------------------------------------------
FIELDS = ("exception", "message", "removed", "errors", "predicted", "accuracies", "initial_error",
          "initial_accuracy", "stop_reason", "hidden_sizes", "scores")


def first_difference(a, b):
    """Where two recordings first differ: (field, step or None, value in a, value in b), or None."""
    for f in FIELDS:
        x, y = a.get(f), b.get(f)
        if x == y:
            continue
        if isinstance(x, list) and isinstance(y, list):
            for i, (u, v) in enumerate(zip(x, y)):
                if u != v:
                    if f == "scores" and isinstance(u, list) and isinstance(v, list) and len(u) == len(v):
                        j = next(j for j, (p, q) in enumerate(zip(u, v)) if p != q)
                        return f, (i, j), u[j], v[j]
                    return f, i, u, v
            return f, min(len(x), len(y)), f"{len(x)} entries", f"{len(y)} entries"
        return f, None, x, y
    return None


def _show(v, width=60):
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= width else s[:width - 3] + "..."


def compare(path_a, path_b, out=sys.stdout, verbose=False) -> int:
    A, B = (json.loads(Path(p).read_text()) for p in (path_a, path_b))
    ra, rb = A["runs"], B["runs"]
    for k in sorted(set(A["meta"]) | set(B["meta"])):
        if k != "source" and A["meta"].get(k) != B["meta"].get(k):
            print(f"meta {k}: {_show(A['meta'].get(k))} | {_show(B['meta'].get(k))}", file=out)
    if A["meta"].get("threads") != B["meta"].get("threads"):
        print("warning: recorded with different thread counts; some float32 scores of non-MLP models depend on it",
              file=out)
    same = differ = 0
    for key in list(ra) + [k for k in rb if k not in ra]:
        if key not in ra or key not in rb:
            differ += 1
            print(f"DIFF {key}: only in {'A' if key in ra else 'B'}", file=out)
            continue
        d = first_difference(ra[key], rb[key])
        if d is None:
            same += 1
            if verbose:
                aspects = [f for f in ("removed", "errors", "predicted", "scores", "exception") if f in ra[key]]
                print(f"same {key}: {', '.join(aspects)} identical", file=out)
            continue
        differ += 1
        f, i, u, v = d
        at = "" if i is None else f" at step {i + 1}" if f in ("removed", "errors", "predicted", "accuracies") \
            else f" of group {i[0]}, unit {i[1]}" if isinstance(i, tuple) else f" of group {i}"
        print(f"DIFF {key}: {f}{at}: A {_show(u)} | B {_show(v)}", file=out)
    print(f"{same} identical, {differ} different ({path_a} vs {path_b})", file=out)
    return 1 if differ else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the recording to this JSON file")
    ap.add_argument("--only", nargs="+", help="only the models whose name starts with one of these")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two recordings; exit 1 on any difference")
    ap.add_argument("--verbose", action="store_true", help="with --compare: print the identical ones too")
    ap.add_argument("--list", action="store_true", help="print the models and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(MODELS))
        return 0
    if a.compare:
        return compare(*a.compare, verbose=a.verbose)
    if not a.out:
        ap.error("expected --out FILE (to record) or --compare A B")
    data = record(a.only, a.threads)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    # one run per line: small, sorted, and a diff of two files shows which runs moved
    runs = data["runs"]
    lines = [f"{json.dumps(k)}: {json.dumps(runs[k], sort_keys=True, separators=(',', ':'))}" for k in runs]
    text = ('{"meta": ' + json.dumps(data["meta"], sort_keys=True) + ',\n"runs": {\n' + ",\n".join(lines) + "\n}}\n")
    json.loads(text)                        # (well-formed)
    Path(a.out).write_text(text)
    print(f"wrote {a.out} ({len(text) / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
