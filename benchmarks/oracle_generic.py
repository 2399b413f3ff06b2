"""The exact oracle on models other than the MLP: scoring every unit of a group by brute force, three ways.

    python benchmarks/oracle_generic.py                      # ViT, CNN, BERT-style text model; 2 threads
    python benchmarks/oracle_generic.py --models vit --threads 1

For each model, every unit of each chosen group is scored (E with the unit switched off) by

* literal    the definition: one full forward pass over the data per candidate (a gate hook set, the
             model run, the loss summed), ``shrinknet.oracle.literal_errors``;
* replicated the data copied once per candidate, each copy with its own gate row, in passes of the
             model's ``batch_rows`` rows (the oracle before it ran under vmap);
* vmap       ``shrinknet.oracle.errors_without``: the model under ``torch.func.vmap`` over the gate rows,
             so the layers upstream of the unit run once and only the downstream part per candidate.

All three run in one process, interleaved (literal, replicated, vmap, repeated ``--rounds`` times; the
median is reported), so that a change in machine load hits all alike; the ratios are against the
literal definition. Errors of the three agree to float rounding (printed). Peak memory: the largest
batch the vmap path runs (rows x candidates per chunk) and the process's max RSS after each method.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch import nn

MODELS = ("vit", "cnn", "bert")


def vit():
    """The issue's model: 4 layers, width 64, FFN 128, 4 heads; 64 images of 28 x 28."""
    import transformers as tf
    cfg = tf.ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=128, num_labels=10)
    torch.manual_seed(0)
    m = tf.ViTForImageClassification(cfg).eval()
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g), None


def cnn():
    """Two Conv2d -> BatchNorm -> ReLU blocks (32, 64 channels) and a hidden Linear(., 128); 64 images 28 x 28."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g), None


def bert():
    """A BERT-style text classifier: 4 layers, width 64, FFN 128, 4 heads; 64 sequences of 32 tokens."""
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


def replicated_errors(ctx, layer, units):
    """The replicated path alone (no vmap), as the oracle ran before."""
    from shrinknet.oracle import replicated
    state = replicated.VmapState()
    state.ok = False
    return replicated.errors_with_gains(ctx.model, ctx.data, ctx.loss, layer, units, torch.zeros(len(units)), state)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(name: str, rounds: int):
    import shrinknet
    from shrinknet.oracle import replicated
    model, X, y, units = {"vit": vit, "cnn": cnn, "bert": bert}[name]()
    ctx = shrinknet.PruningContext.start(model, X, y, units=units)
    gm = ctx.model
    n_rows = y.shape[0]
    print(f"\n{name}: groups {dict(zip(gm.unit_names, gm.hidden_sizes))}, {n_rows} samples, "
          f"batch_rows {gm.batch_rows}")
    methods = {"literal": shrinknet.oracle.literal_errors, "replicated": replicated_errors,
               "vmap": shrinknet.oracle.errors_without}
    times = {k: [] for k in methods}
    rss = {}
    errs = {}
    with torch.no_grad():
        for l in range(gm.n_hidden_layers):                  # warm-up: first allocations, thread pool
            shrinknet.oracle.errors_without(ctx, l, [0])
        for _ in range(rounds):
            for k, fn in methods.items():
                t0 = time.perf_counter()
                errs[k] = [fn(ctx, l, list(range(K))) for l, K in enumerate(gm.hidden_sizes)]
                times[k].append(time.perf_counter() - t0)
                rss[k] = max_rss_mb()
    lit = torch.cat(errs["literal"]).double()
    chunks = [replicated._vmap_chunks(gm, l, n_rows, K) for l, K in enumerate(gm.hidden_sizes)]
    print(f"  candidates {sum(gm.hidden_sizes)}; vmap chunks (rows x candidates) per group: "
          f"{', '.join(f'{n}x{c}' for n, c in chunks)}; replicated: {'x'.join(map(str, replicated._chunks(gm, n_rows, max(gm.hidden_sizes))))}")
    for k in methods:
        t = statistics.median(times[k])
        dev = float(((torch.cat(errs[k]).double() - lit).abs() / lit.abs()).max())
        print(f"  {k:<10} {t:8.2f} s  ({statistics.median(times['literal']) / t:5.1f}x the literal)  "
              f"max rel. difference {dev:.1e}  max RSS {rss[k]:.0f} MB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default: 3)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads")
    for name in a.models:
        run(name, a.rounds)


if __name__ == "__main__":
    main()
