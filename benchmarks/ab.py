"""A benchmark run against two source trees in turn (A, B, A, B, ...), its key figures side by side.

    python benchmarks/ab.py --a /path/to/before --b /path/to/after --rounds 3 -- benchmarks/oracle.py --nets 400-100-10
    python benchmarks/ab.py --a ../before --b . --rounds 3 -- benchmarks/oracle_generic.py --models cnn --rounds 1

Every run is a fresh process with ``PYTHONPATH=TREE/src`` (so that tree's package is the one imported),
started in that tree's folder, and runs that tree's own copy of the script (a benchmark that reaches into
the package's internals then matches its tree; a warning says where the two copies differ;
``--script-from a`` runs A's copy in both). The trees alternate within every round, A first in odd rounds
and B first in even ones, so that a change in machine load hits both alike.

The compiled oracle kernel (``src/shrinknet/oracle/_fused_*.so``) must exist in each tree: where one tree
lacks it, it is copied from the other (and said so); the two trees' ``_fused.c`` should then be the same.

Key figures are read from the script's printed lines: every indented line ``label[ :] NUMBER s`` (or
``h``) under a heading line ``name: ...`` becomes ``name / label`` (benchmarks/oracle.py's "fast exact"
and "literal" lines, benchmarks/oracle_generic.py's "literal", "replicated" and "vmap" lines), the first
time on the line, in seconds. It prints each round's figures for A and B, and per figure the median of the
rounds' ratios B / A (below 1: B is faster).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

KERNELS = "src/shrinknet/oracle"
HEADING = re.compile(r"^(\S[^:]*):")
FIGURE = re.compile(r"^\s+([A-Za-z][\w .()-]*?)\s*:?\s+([0-9]+(?:\.[0-9]+)?)\s*(s|h)\b")


def parse(text: str) -> dict[str, float]:
    """Key figures (seconds) of a benchmark's output: ``heading / label`` -> the first time on the line."""
    out, head = {}, ""
    for line in text.splitlines():
        m = HEADING.match(line)
        if m and not line.startswith(("torch ", "  ")):
            head = m.group(1).strip()
            continue
        m = FIGURE.match(line)
        if m:
            label, value, unit = m.groups()
            key = f"{head} / {label.strip()}" if head else label.strip()
            out.setdefault(key, float(value) * (3600 if unit == "h" else 1))
    return out


def ensure_kernels(a: Path, b: Path, log=sys.stdout) -> None:
    """Copy the compiled kernels a tree lacks from the other tree (saying so)."""
    for src, dst in ((a, b), (b, a)):
        for so in sorted((src / KERNELS).glob("_fused*.so")):
            target = dst / KERNELS / so.name
            if not target.exists() and target.parent.is_dir():
                shutil.copy2(so, target)
                print(f"copied {so.name} from {src} to {dst / KERNELS} (that tree had no compiled kernel)", file=log)
    ca, cb = a / KERNELS / "_fused.c", b / KERNELS / "_fused.c"
    if ca.exists() and cb.exists() and not filecmp.cmp(ca, cb, shallow=False):
        print(f"warning: the two trees' _fused.c differ; each tree's .so files are its own build only if it was "
              f"built there", file=log)


def run_once(tree: Path, script: Path, args: list[str], timeout: float) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(script), *args], cwd=tree, env=env, capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{script} in {tree} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 usage="%(prog)s --a DIR --b DIR [--rounds N] -- SCRIPT [ARGS ...]")
    ap.add_argument("--a", required=True, type=Path, help="the first tree (e.g. before a refactor)")
    ap.add_argument("--b", required=True, type=Path, help="the second tree (e.g. after it)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each running A and B once (default: 3)")
    ap.add_argument("--script-from", choices=("each", "a", "b"), default="each",
                    help="whose copy of the script runs (default: each tree its own)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one run may take (default: 3600)")
    ap.add_argument("--show", action="store_true", help="print every run's output")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS ...], the script relative to a tree")
    a = ap.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("expected -- SCRIPT [ARGS ...] after the options")
    trees = {"A": a.a.resolve(), "B": a.b.resolve()}
    for k, t in trees.items():
        if not (t / "src" / "shrinknet").is_dir():
            ap.error(f"--{k.lower()}: expected a shrinknet source tree (with src/shrinknet), got {t}")
    rel = Path(cmd[0])
    scripts = {k: (t if a.script_from == "each" else trees[a.script_from.upper()]) / rel for k, t in trees.items()}
    for k, s in scripts.items():
        if not s.is_file():
            ap.error(f"{rel}: not found in tree {k} ({s})")
    if a.script_from == "each" and not filecmp.cmp(scripts["A"], scripts["B"], shallow=False):
        print(f"warning: the two trees' {rel} differ (each runs its own; --script-from a runs A's in both)")
    ensure_kernels(trees["A"], trees["B"])
    print(f"A = {trees['A']}\nB = {trees['B']}\nrunning {' '.join(cmd)}, {a.rounds} round(s), A and B alternated")

    figures = {"A": [], "B": []}
    for r in range(a.rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        for k in order:
            text, wall = run_once(trees[k], scripts[k], cmd[1:], a.timeout)
            if a.show:
                print(f"---- round {r + 1}, {k} ----\n{text}")
            f = parse(text)
            f["process wall"] = wall
            figures[k].append(f)
        keys = list(figures["A"][-1]) + [x for x in figures["B"][-1] if x not in figures["A"][-1]]
        print(f"\nround {r + 1} ({' then '.join(order)}):")
        w = max(len(x) for x in keys)
        print(f"  {'figure':<{w}}  {'A (s)':>10}  {'B (s)':>10}  {'B/A':>6}")
        for x in keys:
            va, vb = figures["A"][-1].get(x), figures["B"][-1].get(x)
            ratio = f"{vb / va:6.3f}" if va and vb is not None else "     -"
            sa = f"{va:10.3f}" if va is not None else f"{'-':>10}"
            sb = f"{vb:10.3f}" if vb is not None else f"{'-':>10}"
            print(f"  {x:<{w}}  {sa}  {sb}  {ratio}")
    keys = list(figures["A"][0]) + [x for x in figures["B"][0] if x not in figures["A"][0]]
    print(f"\nmedian over {a.rounds} round(s) of B/A (below 1: B faster):")
    w = max(len(x) for x in keys)
    for x in keys:
        ratios = [fb[x] / fa[x] for fa, fb in zip(figures["A"], figures["B"]) if fa.get(x) and x in fb]
        med = f"{statistics.median(ratios):.3f}" if ratios else "-"
        spread = f"  (rounds {min(ratios):.3f}-{max(ratios):.3f})" if len(ratios) > 1 else ""
        print(f"  {x:<{w}}  {med}{spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
