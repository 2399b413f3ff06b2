"""The figures are drawn without pyplot and leave the user's matplotlib backend alone."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

SRC = Path(__file__).parents[2] / "src"


def test_plotting_keeps_the_backend_and_loads_no_pyplot(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        import matplotlib
        matplotlib.use("svg")                       # the user's choice, before shrinknet comes in
        from shrinknet.paper import plots
        from shrinknet.results import PruneResult
        r = PruneResult("taylor1", "iterative", "sse", [3, 2], 1.0, 0.5, removed=[(0, 0), (1, 1)],
                        errors=[1.5, 2.0], predicted=[0.4, 0.6], accuracies=[0.4, 0.3], initially_active=5)
        files = [plots.plot_curves([r], "c.png", title="t"), plots.plot_layers(r, "l.png"),
                 plots.plot_gain_surfaces({"taylor1": [(1, 0, 0, [0, 1, 2], [3.0, 1.0, 2.0])]}, "g.png"),
                 plots.plot_curves([r], "c.svg")]
        print(json.dumps({"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules,
                          "sizes": [f.stat().st_size for f in files]}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("MPLBACKEND", None)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["backend"] == "svg" and not got["pyplot"], got
    assert all(s > 1000 for s in got["sizes"]), got
    png = (tmp_path / "c.png").read_bytes()
    assert png.startswith(b"\x89PNG") and (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_without_matplotlib_plotting_says_which_extra(monkeypatch, tmp_path):
    from shrinknet.paper import plots
    from shrinknet.results import PruneResult
    r = PruneResult("taylor1", "iterative", "sse", [3], 1.0, None, removed=[(0, 0)], errors=[1.5],
                    predicted=[0.4], initially_active=3)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'shrinknet\[paper\]'") as e:
        plots.plot_curves([r], tmp_path / "c.png")
    from shrinknet import ShrinkNetError
    assert isinstance(e.value, ShrinkNetError) and not (tmp_path / "c.png").exists()


def test_the_older_name_holds_the_same_figures():
    """Every figure lives in shrinknet.plots (the library draws CompareResult.save's); the paper's
    code and older imports reach the same functions and tables through shrinknet.paper.plots."""
    import shrinknet.plots
    from shrinknet.paper import plots
    names = [n for n in vars(shrinknet.plots) if not n.startswith("_")]
    assert {"plot_curves", "plot_layers", "plot_gain_surfaces", "plot_comparison", "check_available", "CRITERIA",
            "COLORS", "LABELS", "style", "label", "DPI"} <= set(names)
    assert all(getattr(plots, n) is getattr(shrinknet.plots, n) for n in names)
