"""The exact oracle on models other than the MLP: measured time against a plain loop, beside its FLOPs floor.

    python benchmarks/oracle_generic.py                        # all five models; 1 thread
    python benchmarks/oracle_generic.py --models vit32 cnn --threads 2 --rounds 3
    python benchmarks/ab.py --a /tmp/base --b . --rounds 3 --script-from b -- benchmarks/oracle_generic.py

For each model every unit of every group is scored (E with the unit switched off) by

* literal  the definition: one full forward pass over the data per candidate (the gate set, the model
           run, the loss summed), ``shrinknet.oracle.literal_errors``: the plain loop;
* oracle   ``shrinknet.oracle.errors_without``, what ``score(..., criterion="brute-force")`` runs.

The two alternate (literal, oracle, ``--rounds`` times; medians and the spread reported) so that a change
in machine load hits both alike. Errors of the two agree to float rounding (printed).

The floor (where the tree has :mod:`shrinknet.oracle.floor`): FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions, attention) of one full pass
(what the literal definition pays per candidate) and of one candidate's pass as the oracle runs it (from
the gate on, the last block cut to the rows the loss reads where :mod:`shrinknet.oracle.rows` accepts
it); ``floor`` is sum_l K_l full / sum_l K_l oracle_l, the speed-up over the literal loop the FLOPs
allow, and ``no cut`` the same without the row cut. ``cnn`` also times steps of an iterative
brute-force prune (``prune step``, seconds per removal).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

MODELS = ("vit32", "vit", "bert", "gpt", "cnn")


def vit32():
    """The issue's ViT: 4 layers, width 64, 2 heads, FFN 128; 64 images 32 x 32 in 4 x 4 patches (65 tokens)."""
    import transformers as tf
    cfg = tf.ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=2, intermediate_size=128, num_labels=10)
    torch.manual_seed(0)
    m = tf.ViTForImageClassification(cfg).eval()
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g), None


def vit():
    """The developers' ViT: 4 layers, width 64, FFN 128, 4 heads; 64 images of 28 x 28 (16 patches)."""
    import transformers as tf
    cfg = tf.ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=128, num_labels=10)
    torch.manual_seed(0)
    m = tf.ViTForImageClassification(cfg).eval()
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g), None


def bert():
    """A BERT-style text classifier (pooled first token): 4 layers, width 64, FFN 128, 4 heads; 64
    sequences of 32 tokens, some padded; FFN neurons and heads."""
    import transformers as tf
    cfg = tf.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    m = tf.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1000, (64, 32), generator=g)
    mask = torch.ones(64, 32, dtype=torch.long)
    mask[::4, 24:] = 0                                      # some padding
    return m, {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 2, (64,), generator=g), ["ffn", "heads"]


def gpt():
    """A GPT-2-style language model predicting the last position (the others labelled -100): 4
    layers, width 64, FFN 128, 4 heads; 64 sequences of 32 tokens; FFN neurons and heads."""
    import transformers as tf
    cfg = tf.GPT2Config(vocab_size=500, n_embd=64, n_layer=4, n_head=4, n_positions=64, n_inner=128,
                        use_cache=False)
    torch.manual_seed(0)
    m = tf.GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 500, (64, 32), generator=g)
    y = torch.full((64, 32), -100, dtype=torch.long)
    y[:, -1] = torch.randint(0, 500, (64,), generator=g)
    return m, {"input_ids": ids}, y, ["ffn", "heads"]


def cnn():
    """Conv-BN-ReLU x2 + Linear (8 and 16 channels, 2 x 2 pooling); 2,000 generated images 28 x 28."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()
    with torch.no_grad():                                   # BatchNorm statistics as after training
        for bn in (m[1], m[5]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(2000, 1, 28, 28, generator=g), torch.randint(0, 10, (2000,), generator=g), None


def floor(ctx):
    """(FLOPs of one full pass, [FLOPs of one candidate's oracle pass per group], the same without the
    row cut, whether the rows are cut): :func:`shrinknet.oracle.floor.flops_floor`, or None where this
    tree has none."""
    try:
        from shrinknet.oracle.floor import flops_floor
    except ImportError:
        return None
    f = flops_floor(ctx)
    return f.full, f.per_group, f.without_row_cut, f.rows_cut


def spread(ts) -> str:
    return f"{min(ts):.2f}-{max(ts):.2f}"


def run(name: str, rounds: int):
    import shrinknet
    model, X, y, units = {"vit32": vit32, "vit": vit, "bert": bert, "gpt": gpt, "cnn": cnn}[name]()
    ctx = shrinknet.PruningContext.start(model, X, y, units=units)
    gm = ctx.model
    sizes = gm.hidden_sizes
    print(f"\n{name}: groups {dict(zip(gm.unit_names, sizes))}, {y.shape[0]} samples, batch_rows {gm.batch_rows}")
    fl = floor(ctx)
    methods = {"literal": shrinknet.oracle.literal_errors, "oracle": shrinknet.oracle.errors_without}
    times = {k: [] for k in methods}
    errs = {}
    with torch.no_grad():
        for l in range(gm.n_hidden_layers):                  # warm-up: first allocations, thread pool
            shrinknet.oracle.errors_without(ctx, l, [0])
        for _ in range(rounds):
            for k, fn in methods.items():
                t0 = time.perf_counter()
                errs[k] = [fn(ctx, l, list(range(K))) for l, K in enumerate(sizes)]
                times[k].append(time.perf_counter() - t0)
    lit = torch.cat(errs["literal"]).double()
    dev = float(((torch.cat(errs["oracle"]).double() - lit).abs() / lit.abs()).max())
    t_lit, t_or = statistics.median(times["literal"]), statistics.median(times["oracle"])
    print(f"  candidates {sum(sizes)}")
    print(f"  literal   {t_lit:8.2f} s  (rounds {spread(times['literal'])} s)")
    line = (f"  oracle    {t_or:8.2f} s  (rounds {spread(times['oracle'])} s; {t_lit / t_or:4.1f}x the literal, "
            f"max rel. difference {dev:.1e})")
    print(line)
    if fl is not None:
        full, per, plain, cut = fl
        total = sum(k * full for k in sizes)
        f_cut = total / sum(k * f for k, f in zip(sizes, per))
        f_plain = total / sum(k * f for k, f in zip(sizes, plain))
        print(f"  floor by FLOPs {f_cut:4.1f}x the literal ({'rows cut' if cut else 'no row cut: every row read'}; "
              f"{f_plain:.1f}x from the gate on alone); measured / floor {t_lit / t_or / f_cut:.2f}; "
              f"full pass {full / 1e6:.1f} MFLOP, per candidate by group {', '.join(f'{f / 1e6:.1f}' for f in per)}")
    try:
        choice = ctx.evaluator.vmap.choice.by_group
        how = [h + (str(c) if h == "vmap" else "") for h, c in choice.values()]
        print(f"  chosen per group: {', '.join(how)}")
    except AttributeError:
        pass
    if name == "cnn":
        steps = 3
        try:
            stop = shrinknet.Stop(n_units=steps)
        except TypeError:                                   # trees before Stop(n_units=): n_neurons
            stop = shrinknet.Stop(n_neurons=steps)
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            shrinknet.prune(model, X, y, criterion="brute-force", stop=stop, progress=False)
            ts.append((time.perf_counter() - t0) / steps)
        print(f"  prune step {statistics.median(ts):8.2f} s  (per removal, iterative brute force; rounds {spread(ts)} s)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds; the median is reported (default: 3)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s)")
    for name in a.models:
        run(name, a.rounds)


if __name__ == "__main__":
    main()
