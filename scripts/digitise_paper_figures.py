"""Read the plotted curves out of the paper's vector figures (matplotlib PDFs) into data coordinates.

    python scripts/digitise_paper_figures.py /path/to/paper/source  [OUT.json]

Writes ``src/shrinknet/paper/digitised/paper_curves.json`` by default. No PDF library is needed: the
figures are matplotlib PDFs whose page content is one Flate-compressed stream of plain path and text
operators, so the stream is inflated with zlib and read with a small operator interpreter:

* each axes is the clip rectangle (``x y w h re W n``) its paths are drawn under;
* its tick positions are the white grid lines (seaborn style) drawn at every tick, and the tick values
  the numeric labels drawn below (x) or left of (y) the axes, matched in order;
* its curves are the coloured strokes with more than two vertices, named by the legend (the short
  coloured stroke drawn just before each legend text), or in drawing order where the legend's colours
  repeat (the gain figures' ten "Neuron: k" curves cycle through six colours).

The reading error: vertices are written with 6 decimals of a point and the ticks exactly, so a read
value is exact to well below 1e-4 of its axis; matplotlib draws every vertex it is given here (the
curves have one vertex per removal step, none merged), so the reading error is that of the
figure's own rounding: we state it as 0.25 pt (a quarter of a printer's point) in data units per axis,
written into the file as ``x_error`` / ``y_error`` of each axes. The log-scale panels (left half of
the gain figures) are skipped: their tick labels are mathtext pieces; the linear panel (right) holds
the same curves.
"""
from __future__ import annotations

import json
import re
import sys
import zlib
from pathlib import Path

#: figure file -> (the paper's figure, what its x axis counts, the hidden neurons K of the net)
FIGURES = {
    "cos-small": ("2 left", "count", 20), "cos-big": ("2 right", "count", 100),
    "mnist-acc99-single-pass-method": ("3 left", "pct", 100),
    "mnist-acc99-single-pass-accuracy": ("3 right", "pct", 100),
    "mnist-acc99-iterative-rerank-method": ("4 left", "pct", 100),
    "mnist-acc99-iterative-rerank-accuracy": ("4 right", "pct", 100),
    "mnist-acc99-gt-gain": ("5", "gain", 100), "mnist-acc99-g1-gain": ("6", "gain", 100),
    "mnist-acc99-g2-gain": ("7", "gain", 100),
    "mnist-deep-single-pass-method": ("8 left", "pct", 100),
    "mnist-deep-single-pass-accuracy": ("8 right", "pct", 100),
    "mnist-deep-iterative-rerank-method": ("9 left", "pct", 100),
    "mnist-deep-iterative-rerank-accuracy": ("9 right", "pct", 100),
    "mnist-deep-gt-gain": ("10", "gain", 100), "mnist-deep-g1-gain": ("11", "gain", 100),
    "mnist-deep-g2-gain": ("12", "gain", 100),
    "mnist-test-single-digit-0": ("13", "count", 100), "mnist-test-single-digit-0-gt": ("14", "gain", 100),
    "mnist-test-single-digit-0-g1": ("15", "gain", 100), "mnist-test-single-digit-0-g2": ("16", "gain", 100),
    "mnist-test-single-digit-1": ("17", "count", 100), "mnist-test-single-digit-1-gt": ("18", "gain", 100),
    "mnist-test-single-digit-1-g1": ("19", "gain", 100), "mnist-test-single-digit-1-g2": ("20", "gain", 100),
    "mnist-test-single-digit-2": ("21", "count", 100), "mnist-test-single-digit-2-gt": ("22", "gain", 100),
    "mnist-test-single-digit-2-g1": ("23", "gain", 100), "mnist-test-single-digit-2-g2": ("24", "gain", 100),
    "diamond-iterative-rerank-method": ("25 top left", "pct", 100),
    "diamond-iterative-rerank-accuracy": ("25 top right", "pct", 100),
    "rshape-iterative-rerank-method": ("25 bottom left", "pct", 100),
    "rshape-iterative-rerank-accuracy": ("25 bottom right", "pct", 100),
}
READING_ERROR_PT = 0.25
_TOKEN = re.compile(r"\((?:[^()\\]|\\.)*\)|/[^\s/\[\]()<>]+|\[|\]|<<|>>|[-+]?(?:\d+\.?\d*|\.\d+)|[A-Za-z'\"*]+")
_NUMBER = re.compile(r"[-+]?\d*\.?\d+$")


def page_content(pdf: Path) -> str:
    """The page's content stream (the largest inflated stream that draws text), as text."""
    data = pdf.read_bytes()
    best = ""
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            text = zlib.decompress(m.group(1)).decode("latin1")
        except zlib.error:
            continue
        if " Tj" in text and len(text) > len(best):
            best = text
    return best


def interpret(content: str) -> list[dict]:
    """The axes of the page: [{"clip", "vgrid", "hgrid", "texts", "curves", "legend"}] in drawing order."""
    axes: list[dict] = []
    current = None
    stack, stroke, clip, pending_clip = [], (0.0, 0.0, 0.0), None, None
    path: list[tuple[float, float]] = []
    ctm_text = (0.0, 0.0)
    text_pos, args = (0.0, 0.0), []
    last_short = None
    for tok in _TOKEN.findall(content):
        if _NUMBER.match(tok) or tok.startswith(("(", "/")) or tok in "[]":
            args.append(tok)
            continue
        op, a = tok, args
        args = []
        if op == "q":
            stack.append((stroke, clip, ctm_text))
        elif op == "Q":
            stroke, clip, ctm_text = stack.pop() if stack else (stroke, None, (0.0, 0.0))
        elif op == "RG":
            stroke = tuple(round(float(v), 4) for v in a[-3:])
        elif op == "G":
            g = round(float(a[-1]), 4)
            stroke = (g, g, g)
        elif op == "re":
            pending_clip = tuple(float(v) for v in a[-4:])
        elif op == "W":
            clip = pending_clip
            if current is None or current["clip"] != clip:
                current = {"clip": clip, "vgrid": [], "hgrid": [], "texts": [], "curves": [], "legend": []}
                axes.append(current)
        elif op == "n":
            path = []
        elif op == "m":
            path = [(float(a[-2]), float(a[-1]))]
        elif op == "l":
            path.append((float(a[-2]), float(a[-1])))
        elif op == "cm":
            ctm_text = (float(a[-2]), float(a[-1]))
        elif op in ("S", "B", "f", "h"):
            if op == "S" and current is not None and len(path) >= 2:
                x0, y0 = path[0]
                x1, y1 = path[-1]
                if stroke == (1.0, 1.0, 1.0) and clip is not None and len(path) == 2:
                    if abs(x0 - x1) < 1e-6 and abs(y1 - y0) > 0.9 * clip[3]:
                        current["vgrid"].append(x0)
                    elif abs(y0 - y1) < 1e-6 and abs(x1 - x0) > 0.9 * clip[2]:
                        current["hgrid"].append(y0)
                elif clip is not None and len(path) > 2 and len(set(stroke)) > 1:
                    current["curves"].append({"color": stroke, "points": list(path)})
                elif clip is None and len(path) == 2 and len(set(stroke)) > 1:
                    last_short = stroke
            if op in ("S", "B", "f"):
                path = []
        elif op == "BT":
            text_pos = (0.0, 0.0)
        elif op == "Td":
            text_pos = (float(a[-2]), float(a[-1]))
        elif op == "Tj" and current is not None:
            s = a[-1][1:-1].replace("\\(", "(").replace("\\)", ")")
            x, y = text_pos[0] + ctm_text[0], text_pos[1] + ctm_text[1]
            current["texts"].append((x, y, s))
            if last_short is not None and clip is None and not _NUMBER.match(s):
                current["legend"].append((s, last_short))
                last_short = None
    return axes


def _ticks(grid: list[float], labels: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """(position in pt, value) of each tick: each label with the grid line nearest to it (within 10 pt; a
    label whose grid line lies on the axes' edge, where none is drawn, is left out)."""
    grid = sorted(set(round(g, 4) for g in grid))
    ticks = []
    for pos, v in labels:
        near = min(grid, key=lambda g: abs(g - pos), default=None)
        if near is not None and abs(near - pos) <= 10:
            ticks.append((near, float(v)))
    if len(ticks) < 2 or len({g for g, _ in ticks}) != len(ticks):
        raise ValueError(f"{len(grid)} grid lines against {len(labels)} tick labels")
    return sorted(ticks)


def _linear(ticks):
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    scale = (v1 - v0) / (p1 - p0)
    worst = max(abs(v0 + (p - p0) * scale - v) for p, v in ticks)
    if worst > 1e-6 * abs(v1 - v0):
        raise ValueError(f"ticks are not evenly spaced (off by {worst:g}): a log axis?")
    return lambda p: v0 + (p - p0) * scale, abs(scale)


def digitise(pdf: Path) -> list[dict]:
    """The figure's linear axes, each with its axis labels, ticks, reading error and named curves."""
    out = []
    for ax in interpret(page_content(pdf)):
        x0, y0, w, h = ax["clip"]
        nums = [(x, y, s) for x, y, s in ax["texts"] if _NUMBER.match(s)]
        xlab = [(x, s) for x, y, s in nums if y < y0 - 8]
        ylab = [(y, s) for x, y, s in nums if x < x0 - 1 and y >= y0 - 8]
        try:
            fx, sx = _linear(_ticks(ax["vgrid"], xlab))
            fy, sy = _linear(_ticks(ax["hgrid"], ylab))
        except ValueError:
            continue                                  # the log panel of a gain figure
        words = [s for x, y, s in ax["texts"] if not _NUMBER.match(s)]
        legend = [s for s, _ in ax["legend"]]
        colors = [c for _, c in ax["legend"]]
        curves = {}
        repeated = len(set(colors)) < len(colors)
        for i, c in enumerate(ax["curves"]):
            if repeated or c["color"] not in colors:
                name = legend[i] if i < len(legend) else f"curve {i}"
            else:
                name = legend[colors.index(c["color"])]
            curves[name] = [[round(fx(px), 6), round(fy(py), 6)] for px, py in c["points"]]
        out.append({"xlabel": next((s for s in words if "Neuron" in s or "Gain" in s), ""),
                    "ylabel": next((s for s in words if "Error" in s or "Accuracy" in s), ""),
                    "x_error": round(READING_ERROR_PT * sx, 8), "y_error": round(READING_ERROR_PT * sy, 8),
                    "curves": curves})
    return out


def main(argv: list[str]) -> None:
    src = Path(argv[1]) if len(argv) > 1 else Path("../shared/paper/source")
    dst = Path(argv[2]) if len(argv) > 2 else Path(__file__).resolve().parents[1] / "src/shrinknet/paper/digitised/paper_curves.json"
    result = {"source": "the figure PDFs of the paper's LaTeX source (github aditya17a/ICLR2017)",
              "reading_error": f"{READING_ERROR_PT} pt of the figure, in data units per axis (x_error, y_error)",
              "figures": {}}
    for name, (fig, xkind, K) in FIGURES.items():
        axes = digitise(src / f"{name}.pdf")
        result["figures"][name] = {"figure": fig, "x": xkind, "K": K, "axes": axes}
        print(f"{name}: fig. {fig}: " + "; ".join(f"{a['ylabel']} {len(a['curves'])} curves "
                                                  f"({', '.join(f'{k}: {len(v)}' for k, v in a['curves'].items())})"
                                                  for a in axes))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(result, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(sys.argv)
