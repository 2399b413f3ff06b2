"""taylor2 against taylor2-sampled (and fisher, taylor1) on a small character GPT-2: time of one
scoring and Spearman correlation with the exact changes along the oracle's first removals.

    python benchmarks/gpt_sampled.py            # about 2 minutes on one thread

The model is examples/gpt_chars.py's GPT2LMHeadModel at a smaller size (2 layers of width 32, 2 heads,
FFN 64, context 32), trained here for 1000 steps of 32 windows on this repository's own Markdown text as of commit 8e7d144
(README.md and docs/*.md read with git, so the corpus stays the same as the documents change and nothing
needs installing or downloading), seeded, one thread.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import shrinknet  # noqa: F401  (first: thread settings before torch loads)
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from gpt_chars import Config, make_gpt, train  # noqa: E402

from shrinknet.criteria.taylor import sampled_taylor2  # noqa: E402


#: the commit whose Markdown is the corpus
COMMIT = "8e7d144"


def corpus(block: int, n: int, seed: int):
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout
    names = ["README.md"] + sorted(f for f in git("ls-tree", "--name-only", COMMIT, "docs/").split()
                                   if f.endswith(".md"))
    text = "\n".join(git("show", f"{COMMIT}:{f}") for f in names)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    start = torch.randint(0, len(ids) - block - 1, (n,), generator=torch.Generator().manual_seed(seed))
    X = torch.stack([ids[s:s + block] for s in start.tolist()])
    Y = torch.stack([ids[s + 1:s + block + 1] for s in start.tolist()])
    return chars, X, Y


def main() -> None:
    torch.set_num_threads(1)
    cfg = Config(block=32, n_embd=32, n_layer=2, n_head=2, n_inner=64)
    chars, X, Y = corpus(cfg.block, 1000 * 32 + 16, seed=0)
    model = make_gpt(len(chars), 0, cfg)
    t = time.perf_counter()
    losses = train(model, X[16:], Y[16:], epochs=1, lr=3e-3, batch_size=32)
    print(f"vocabulary {len(chars)}, trained 1000 steps in {time.perf_counter() - t:.0f}s: "
          f"loss {losses[0]:.3f} -> {sum(losses[-20:]) / 20:.3f}")
    Xc, Yc = X[:16], Y[:16]                     # 16 calibration windows (held out of training)
    crits = ["taylor1", "fisher", "taylor2", "taylor2-sampled", sampled_taylor2(draws=8)]
    for c in crits:
        name = c if isinstance(c, str) else c.name
        t = time.perf_counter()
        shrinknet.score(model, Xc, Yc, c, units=["ffn", "heads"], progress=False)
        print(f"one scoring of {name}: {time.perf_counter() - t:.2f}s")
    t = time.perf_counter()
    res = shrinknet.compare_criteria(model, Xc, Yc, crits, units=["ffn", "heads"], steps=4, own_paths=False,
                                     progress=False)
    print(f"compare_criteria over 4 oracle steps: {time.perf_counter() - t:.0f}s")
    for row in res.summary_rows():
        print(row)


if __name__ == "__main__":
    main()
