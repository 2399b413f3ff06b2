"""Uniform pruning: the same number of units kept in every layer, chosen from the global ranking.

``prune(..., uniform=True)`` removes units in *rounds*. Unit groups of one kind and one size (every
block's FFN neurons; every attention module's heads, or key/value groups) form a class; a round
takes one unit from every group of a class, each group's lowest-ranked active unit, and the class
is the one of the lowest-ranked active unit of all. The iterative schedule re-scores after each
round (as it does after each removal); the single schedule forms every round from its one ranking.

Why rounds, rather than a free run whose final keep sets are then made uniform: every state the
result records is one the model really passed through, the stop limits (accuracy, error, counts)
are checked on uniform states only, so the model returned is the last uniform one that meets them,
and re-scoring sees the model as it will be kept. Each removal of a round is still recorded (and
measured) as its own step; a round that would break a limit is not made at all, and a count limit
stops at the last whole round that fits.

A model pruned so reloads from its config alone (see :func:`shrinknet.save_pretrained`), where the
config can say the sizes: the FFN width always, the heads only where the attention module keeps a
head size of its own (``head_dim``: LLaMA-style, ViT). BERT- and GPT-2-style attention derive the
head size from the width and head count, so their heads are refused here by name.
"""
from __future__ import annotations

from ._validation import ShrinkNetError

#: attention styles (see :data:`shrinknet.blocks.ATTENTION_STYLES`) whose head size is a setting of its
#: own (a config's ``head_dim``), so that fewer heads in every layer still reload from the config
FIXED_HEAD_SIZE = frozenset({"qkv"})


def classes(work) -> list[list[int]]:
    """The unit groups that keep equal counts: lists of group indices of one kind and one size."""
    units = getattr(work, "units", None)
    keys = ([(u.kind, int(u.size)) for u in units] if units is not None
            else [("layer", int(n)) for n in work.hidden_sizes])          # the MLP: its hidden layers
    out: dict = {}
    for l, key in enumerate(keys):
        out.setdefault(key, []).append(l)
    return list(out.values())


def check(work) -> list[list[int]]:
    """:func:`classes`, after refusing what uniform pruning cannot do: heads whose size follows from the
    width, and groups of one class that do not start with equal numbers of active units."""
    for u in getattr(work, "units", None) or []:
        site = getattr(u, "site", None)
        if site is not None and site.kind == "heads" and site.heads["style"] not in FIXED_HEAD_SIZE:
            raise ShrinkNetError(
                f"uniform=True: the heads of {u.name!r} ({site.heads['style']}-style attention) derive their size "
                f"from hidden_size / num_attention_heads, so a config cannot say that every layer has fewer heads; "
                f"expected units without these heads (FFN neurons only), or uniform=False")
    groups = classes(work)
    active = [int((g != 0).sum()) for g in work.gates]
    names = work.unit_names
    for c in groups:
        if len({active[l] for l in c}) > 1:
            a, b = c[0], next(l for l in c if active[l] != active[c[0]])
            raise ShrinkNetError(f"uniform=True: {names[a]!r} and {names[b]!r} are of one kind and size but start with "
                                 f"{active[a]} and {active[b]} units active; expected equal counts")
    return groups


def next_round(order, gates, groups: list[list[int]]) -> list[tuple]:
    """The next round's picks, from ``order`` ((group, unit, score), lowest first): the class of the first
    active unit, one (the first active) unit of each of its groups, in ranking order; [] when none is left."""
    def active(l, u):
        return float(gates[l][u]) != 0.0
    lead = next((l for l, u, _ in order if active(l, u)), None)
    if lead is None:
        return []
    members = set(next(c for c in groups if lead in c))
    picks: dict = {}
    for l, u, s in order:
        if l in members and l not in picks and active(l, u):
            picks[l] = (l, u, s)
            if len(picks) == len(members):
                break
    return list(picks.values())


def whole_rounds(records: list, groups: list[list[int]], limit: int, violates, folder) -> list:
    """The recorded lines of a checkpoint that a uniform run replays: whole rounds only, up to the last one
    within ``limit`` whose steps all meet the stop (``violates(step)``: a reason or ''). The end line is
    kept only where every step is. A last round cut short by a kill is refused, naming ``folder``."""
    steps = [r for r in records if "unit" in r]
    of = {l: k for k, c in enumerate(groups) for l in c}
    taken = [[0] * len(c) for c in groups]
    where = {l: c.index(l) for c in groups for l in c}
    last, cut = 0, False
    for k, step in enumerate(steps):
        l = step.get("layer")
        if k + 1 > limit or violates(step) or l not in of:
            cut = True
            break
        taken[of[l]][where[l]] += 1
        if all(len(set(t)) == 1 for t in taken):
            last = k + 1
    if not cut and last < len(steps):
        raise ShrinkNetError(f"checkpoint {folder}: its last round of uniform removals is incomplete ({len(steps) - last} "
                             f"of its steps recorded: the run was stopped while writing them); expected the folder of a "
                             f"run that ended its rounds (remove {folder} to start afresh)")
    if last == len(steps):
        return records
    return steps[:last]


__all__ = ["FIXED_HEAD_SIZE", "check", "classes", "next_round", "whole_rounds"]
