"""A fresh run regenerates the committed report's rows (docs/reproduction/claims.json) that it covers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shrinknet.paper import claims

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "claims.json"


def test_a_fresh_small_run_gives_the_committed_rows_it_covers(tmp_path):
    if not COMMITTED.is_file():
        pytest.skip("no committed claims.json")
    committed = json.loads(COMMITTED.read_text())
    # the smallest experiment, as the full run trains it (not --quick), on its first training seed; through the
    # command line in a fresh process, as the report was made: shrinknet sets MKL's code path before torch loads
    # (shrinknet/_threads.py), which a test process that imported torch first cannot
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "shrinknet", "--quiet", "reproduce", "cos-2x10", "--seeds", "1", "--out",
                    str(tmp_path / "runs")], check=True, env=env, capture_output=True)
    fresh = json.loads((tmp_path / "runs" / "claims.json").read_text())
    covered = {c.id for c in claims.CLAIMS if c.check is not None and set(c.needs) == {"cos-2x10"}}
    assert len(covered) >= 3
    by_id = {r["id"]: r for r in committed}
    compared = 0
    for row in fresh:
        base = row["id"].split("@")[0]
        if base not in covered or row["regime"] != "paper":
            continue
        old = by_id[row["id"]]
        seed0 = next(s for s in old["seeds"] if s["seed"] == 0)
        assert (row["seeds"][0]["measured"], row["seeds"][0]["verdict"]) == (seed0["measured"], seed0["verdict"]), \
            row["id"]
        assert row["rule"] == old["rule"] and row["claim"] == old["claim"]
        compared += 1
    assert compared == 2 * len(covered)                                 # the training and the test rows
